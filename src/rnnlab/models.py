"""The seed's small models, built on an RNN that can be rnnlab's or torch's.

`SequenceTagger` maps each step of a token sequence to a class (the "hello" -> "ohlol"
experiment): one-hot or embedded tokens -> RNN -> Linear at every step. `RowClassifier`
reads a 28x28 image as 28 steps of 28 pixels and classifies it from the last hidden state;
`PixelSequence` in front of it makes the steps single pixels (pixel and permuted MNIST).
`LanguageModel` predicts the next token at every step, carrying its hidden state from one
batch to the next (truncated backpropagation through time). Nothing here knows where data
comes from or how it is trained.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnlab.nn import RNN, init
from rnnlab.options import option

IMPLS = ("rnnlab", "rnnlab-reference", "torch")
INITS = ("default", "identity", "orthogonal")
NONLINEARITIES = ("tanh", "relu")


def impl_option():
    """The `--impl` option every experiment's config declares."""
    return option(
        "rnnlab", "rnnlab's fused path, its reference loop, or torch.nn.RNN", choices=IMPLS
    )


def nonlinearity_option():
    """The `--nonlinearity` option every experiment's config declares."""
    return option("tanh", "the RNN's activation", choices=NONLINEARITIES)


def init_option(default: str = "default"):
    """The `--init` option of the experiments that choose the recurrent weights' start."""
    return option(
        default,
        "recurrent weights: torch's uniform, identity (IRNN) or orthogonal",
        choices=INITS,
    )


def check_rnn_settings(
    impl: str, nonlinearity: str, hidden: int, layers: int, input_size: int = 1
) -> None:
    """Refuse, naming the value and the valid ones, an RNN setting an experiment config holds;
    and sizes whose float32 weights alone could not fit in this machine's memory."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}; got {impl!r}")
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu'; got {nonlinearity!r}")
    for name, value in (("hidden", hidden), ("layers", layers)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    # W_hh (H, H) and W_ih (H, I) per layer, the layers above reading H: 4 bytes a weight
    weights = layers * hidden * (hidden + 2) + hidden * (input_size + (layers - 1) * hidden)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if 4 * weights > memory:
        raise ValueError(
            f"hidden {hidden} x layers {layers} needs {4 * weights:.3g} bytes of weights, more "
            f"than this machine's {memory:.3g} bytes of memory; choose a smaller --hidden"
        )


def make_rnn(
    impl: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    nonlinearity: str = "tanh",
    init_scheme: str = "default",
    dropout: float = 0.0,
    bidirectional: bool = False,
) -> nn.Module:
    """A batch-first RNN: `impl` 'rnnlab' (fused fast path), 'rnnlab-reference' (the per-step
    loop) or 'torch' (torch.nn.RNN); `init_scheme` 'default' (torch's uniform), 'identity'
    (IRNN: W_hh = I, zero biases) or 'orthogonal' (W_hh orthogonal); `bidirectional` adds a
    stack that reads the steps backwards."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}; got {impl!r}")
    if init_scheme not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}; got {init_scheme!r}")
    args = (input_size, hidden_size, num_layers, nonlinearity)
    kwargs = {"batch_first": True, "dropout": dropout, "bidirectional": bidirectional}
    if impl == "torch":
        rnn = nn.RNN(*args, **kwargs)
    else:
        rnn = RNN(*args, **kwargs, impl="reference" if impl == "rnnlab-reference" else "fused")
    if init_scheme == "identity":
        init.identity_(rnn, zero_bias=True)
    elif init_scheme == "orthogonal":
        init.orthogonal_(rnn)
    return rnn


class SequenceTagger(nn.Module):
    """Tokens in, one class per step out: (B, T) ids -> (B, T, num_classes) logits.

    With `embedding_dim` None the tokens enter one-hot (the seed's first model); otherwise
    through a learned `nn.Embedding` (its second model). A Linear maps every h_t to logits.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        hidden_size: int,
        num_layers: int = 1,
        embedding_dim: int | None = None,
        impl: str = "rnnlab",
        nonlinearity: str = "tanh",
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim) if embedding_dim else None
        input_size = embedding_dim or vocab_size
        self.rnn = make_rnn(impl, input_size, hidden_size, num_layers, nonlinearity)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        if self.embedding is not None:
            x = self.embedding(tokens)  # (B, T, E)
        else:
            x = F.one_hot(tokens, self.vocab_size).to(self.head.weight.dtype)  # (B, T, V)
        h, _ = self.rnn(x)  # (B, T, H)
        return self.head(h)  # (B, T, C)


class RowClassifier(nn.Module):
    """An image read row by row: (B, rows, cols) pixels -> (B, num_classes) logits from the
    top layer's last hidden state h_T."""

    def __init__(
        self,
        input_size: int = 28,
        hidden_size: int = 128,
        num_layers: int = 3,
        num_classes: int = 10,
        impl: str = "rnnlab",
        nonlinearity: str = "tanh",
        init_scheme: str = "default",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.rnn = make_rnn(
            impl, input_size, hidden_size, num_layers, nonlinearity, init_scheme, dropout
        )
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        _, h_n = self.rnn(images)  # (L, B, H)
        return self.head(h_n[-1])  # (B, C)


class PixelSequence(nn.Module):
    """An image read pixel by pixel: (B, rows, cols) -> (B, rows * cols, 1), row-major, or in
    `order` (a permutation of the pixel indices) when given: the sequential and permuted MNIST
    tasks. The order is a buffer, so it travels in the state_dict with the weights."""

    def __init__(self, order: list[int] | None = None) -> None:
        super().__init__()
        index = None if order is None else torch.as_tensor(order, dtype=torch.int64)  # (P,)
        self.register_buffer("order", index)

    def forward(self, images: Tensor) -> Tensor:
        pixels = images.flatten(1)  # (B, P)
        if self.order is not None:
            pixels = pixels[:, self.order]  # (B, P)
        return pixels.unsqueeze(-1)  # (B, P, 1)


class LanguageModel(nn.Module):
    """Next-token prediction with the hidden state carried: ids (B, T) -> logits (B, T, V).

    embedding (V -> E) -> dropout -> RNN (E -> H, L layers, dropout between layers) ->
    dropout -> Linear (H -> V); with `tied` the Linear's weight is the embedding's (E == H).

    `forward(tokens)` starts from the state its previous call left (detached: truncated BPTT)
    when that call was in the same mode (training or eval) with the same batch size, else
    from zeros; `reset_state()` forgets both, and so does loading weights. `step(tokens,
    state)` is the stateless form: it takes and returns the state (L, B, H) explicitly.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding: int,
        hidden: int,
        layers: int,
        nonlinearity: str = "tanh",
        impl: str = "rnnlab",
        dropout: float = 0.0,
        tied: bool = False,
        init_scheme: str = "default",
    ) -> None:
        super().__init__()
        if tied and embedding != hidden:
            raise ValueError(
                f"--tied shares the embedding and output weights, so it needs --embedding equal "
                f"to --hidden; got embedding {embedding}, hidden {hidden}"
            )
        self.embedding = nn.Embedding(vocab_size, embedding)
        self.rnn = make_rnn(
            impl, embedding, hidden, layers, nonlinearity, init_scheme, dropout=dropout
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab_size)
        if tied:
            self.head.weight = self.embedding.weight
        self._carried: dict[bool, Tensor] = {}  # training mode -> (L, B, H), detached

    def reset_state(self) -> None:
        self._carried.clear()

    def load_state_dict(self, *args, **kwargs):
        self.reset_state()  # a state carried by other weights means nothing to these
        return super().load_state_dict(*args, **kwargs)

    def step(self, tokens: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Logits (B, T, V) for ids (B, T) from `state` (L, B, H) (None: zeros), and the
        state after the last step."""
        x = self.dropout(self.embedding(tokens))  # (B, T, E)
        h, state = self.rnn(x, state)  # (B, T, H), (L, B, H)
        return self.head(self.dropout(h)), state  # (B, T, V), (L, B, H)

    def forward(self, tokens: Tensor) -> Tensor:
        carried = self._carried.get(self.training)
        if carried is not None and carried.shape[1] != tokens.shape[0]:
            carried = None  # another layout of streams: start afresh
        logits, state = self.step(tokens, carried)
        self._carried[self.training] = state.detach()
        return logits  # (B, T, V)
