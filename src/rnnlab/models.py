"""What every experiment's model shares: the recurrent network as one group of options and one
builder, and the two things a model does with a state of any arity (an LSTM's is (h, c)).

`RNNOptions` is the group every experiment's config inherits (`--cell`, `--hidden`,
`--layers`, `--nonlinearity`, `--impl`, `--init`), each experiment choosing its own defaults
with the `*_option` helpers; `RNNOptions.build_rnn` (over `make_rnn`) builds the network they
describe, rnnlab's or torch's, so that adding a cell touches no experiment. Each experiment's
model class lives in its own file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from torch import Tensor, nn

from rnnlab.nn import GRU, LSTM, RNN, init
from rnnlab.options import check_choice, check_range, option

CELLS = ("rnn", "gru", "lstm")
IMPLS = ("rnnlab", "rnnlab-reference", "torch")
INITS = ("default", "identity", "orthogonal")
NONLINEARITIES = ("tanh", "relu")
MODULES = {"rnn": (RNN, nn.RNN), "gru": (GRU, nn.GRU), "lstm": (LSTM, nn.LSTM)}  # ours, torch's
GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # gate blocks stacked in each weight


def cell_option(default: str = "rnn"):
    return option(default, "the recurrent cell: Elman's tanh/relu RNN, GRU or LSTM", choices=CELLS)


def hidden_option(default: int):
    return option(default, "hidden units per layer (and direction)")


def layers_option(default: int = 1):
    return option(default, "stacked recurrent layers")


def init_option(default: str = "default"):
    return option(
        default,
        "recurrent weights, per gate block: torch's uniform, identity (IRNN) or orthogonal",
        choices=INITS,
    )


@dataclass
class RNNOptions:
    """The recurrent network of an experiment: the config fields every experiment has."""

    cell: str = cell_option()
    hidden: int = hidden_option(128)
    layers: int = layers_option()
    nonlinearity: str = option(
        "tanh", "the Elman cell's activation (--cell rnn only)", choices=NONLINEARITIES
    )
    impl: str = option(
        "rnnlab",
        "rnnlab's fused path, its reference loop, or torch.nn's module of the cell",
        choices=IMPLS,
    )
    init: str = init_option()
    forget_bias: float | None = option(
        None,
        "an LSTM's forget gates start from b_if + b_hf = B (b_hf = 0), so that they open: "
        "sigmoid(1) = 0.73 for 1 (--cell lstm only); default: torch's uniform start",
    )

    def check_rnn(self, input_size: int = 1) -> None:
        """Refuse, naming the value and the valid ones, a setting of the group; the
        nonlinearity of a gated cell; and sizes whose float32 weights alone could not fit in
        this machine's memory. For a config's __post_init__."""
        for name, choices in (
            ("cell", CELLS),
            ("impl", IMPLS),
            ("init", INITS),
            ("nonlinearity", NONLINEARITIES),
        ):
            check_choice(name, getattr(self, name), choices)
        if self.cell != "rnn" and self.nonlinearity != "tanh":
            raise ValueError(
                f"--nonlinearity chooses the Elman cell's activation; a {self.cell.upper()} has "
                f"its own (sigmoid gates, tanh), so it takes none (got {self.nonlinearity!r})"
            )
        if self.forget_bias is not None:
            check_range("forget_bias", self.forget_bias)
            if self.cell != "lstm":
                raise ValueError(
                    f"--forget-bias sets an LSTM's forget gates; --cell {self.cell} has none"
                )
        for name in ("hidden", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        check_memory(self.cell, self.hidden, self.layers, input_size)

    def build_rnn(self, input_size: int, dropout: float = 0.0, bidirectional: bool = False):
        """The batch-first recurrent network these options describe (`make_rnn`)."""
        return make_rnn(
            self.cell,
            self.impl,
            input_size,
            self.hidden,
            self.layers,
            nonlinearity=self.nonlinearity,
            init_scheme=self.init,
            forget_bias=self.forget_bias,
            dropout=dropout,
            bidirectional=bidirectional,
        )


def machine_memory() -> int:
    """This machine's physical memory in bytes: what the size checks compare against."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(cell: str, hidden: int, layers: int, input_size: int = 1) -> None:
    """Refuse sizes whose float32 weights alone could not fit in this machine's memory."""
    # per layer G gate blocks of W_hh (H, H), W_ih (H, I or H) and two biases, 4 bytes each
    inputs = input_size + (layers - 1) * hidden
    weights = GATES[cell] * (layers * hidden * (hidden + 2) + hidden * inputs)
    memory = machine_memory()
    if 4 * weights > memory:
        raise ValueError(
            f"hidden {hidden} x layers {layers} ({cell}) needs {4 * weights:.3g} bytes of "
            f"weights, more than this machine's {memory:.3g} bytes of memory; choose a smaller "
            "--hidden"
        )


def make_rnn(
    cell: str,
    impl: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    *,
    nonlinearity: str = "tanh",
    init_scheme: str = "default",
    forget_bias: float | None = None,
    dropout: float = 0.0,
    bidirectional: bool = False,
) -> nn.Module:
    """A batch-first recurrent network of `cell` ('rnn', 'gru', 'lstm'): `impl` 'rnnlab' (the
    fused path), 'rnnlab-reference' (the per-step loop) or 'torch' (torch.nn's module);
    `init_scheme` 'default' (torch's uniform), 'identity' (each W_hh block = I, zero biases:
    IRNN) or 'orthogonal' (each W_hh block orthogonal); `nonlinearity` for 'rnn' only;
    `forget_bias` for 'lstm' only (`init.forget_bias_`)."""
    check_choice("cell", cell, CELLS)
    check_choice("impl", impl, IMPLS)
    check_choice("init", init_scheme, INITS)
    kwargs = {
        "num_layers": num_layers,
        "batch_first": True,
        "dropout": dropout,
        "bidirectional": bidirectional,
    }
    if cell == "rnn":
        kwargs["nonlinearity"] = nonlinearity
    ours, theirs = MODULES[cell]
    if impl == "torch":
        rnn = theirs(input_size, hidden_size, **kwargs)
    else:
        rnn = ours(
            input_size, hidden_size, **kwargs, impl="reference" if "reference" in impl else "fused"
        )
    if init_scheme == "identity":
        init.identity_(rnn, zero_bias=True)
    elif init_scheme == "orthogonal":
        init.orthogonal_(rnn)
    if forget_bias is not None:
        init.forget_bias_(rnn, forget_bias)
    return rnn


def hidden_of(state) -> Tensor:
    """h of a recurrent module's state: the state itself (RNN, GRU) or an LSTM's (h, c)[0]."""
    return state[0] if isinstance(state, tuple) else state


def detached(state):
    """The state cut from the graph that made it, whatever its arity: carried from batch to
    batch, it starts truncated backpropagation through time afresh (word_language_model's
    repackage_hidden)."""
    return state.detach() if isinstance(state, Tensor) else tuple(detached(s) for s in state)
