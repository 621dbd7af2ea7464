"""The fused layers: the same maths as the reference loop, one autograd node per layer and
direction, with a hand-written backward (rnn.py, gru.py, lstm.py: one Function per cell).

What every cell's Function shares:

- Forward: the input projection of every step is one matmul, X W_ih^T (N, G*H); the serial
  loop then runs one matmul and one pointwise step per step on buffers that end up holding
  everything the backward needs, so nothing is allocated per step.
- Backward: the serial loop is cut to what it cannot avoid, the gradient with respect to the
  state, carried from step to step, and each step's gate gradients; all weight gradients are
  single large matmuls over the N stacked rows after it: dW_ih = dG^T X, dW_hh = dG^T H_prev,
  db = sum_t dg_t, dX = dG W_ih.
- The GRU's and LSTM's loops run compiled (loops.cpp, built at first use; compiled.py), or in
  Python where they cannot be built (loops.py over pointwise.py's torch ops): the same
  arguments and results. The Elman cell's two ops per step stay in Python (rnn.py).
- Under `backward(create_graph=True)` (a second derivative to come) the backward instead
  recomputes the layer with the reference loop and differentiates it with autograd
  (common.py), so the graph it returns can be differentiated again.
"""

from __future__ import annotations

from torch import Tensor

from rnnlab.nn.fused.gru import FusedGRULayer
from rnnlab.nn.fused.lstm import FusedLSTMLayer
from rnnlab.nn.fused.rnn import FusedRNNLayer
from rnnlab.nn.spec import CellSpec, LayerWeights, State

FUNCTIONS = {
    "RNN_TANH": FusedRNNLayer,
    "RNN_RELU": FusedRNNLayer,
    "GRU": FusedGRULayer,
    "LSTM": FusedLSTMLayer,
}


def fused_layer(
    spec: CellSpec,
    x: Tensor,
    batch_sizes: list[int],
    state0: State,
    weights: LayerWeights,
    reverse: bool,
) -> tuple[Tensor, State]:
    """The fused twin of `reference_layer`: same arguments, same results."""
    function = FUNCTIONS[spec.mode]
    out, *state_n = function.apply(spec.mode, batch_sizes, reverse, x, *state0, *weights)
    return out, tuple(state_n)


__all__ = ["FUNCTIONS", "fused_layer"]
