"""rnnlab.nn: the RNN cell and the multi-layer RNN, from their equations. Imports only torch."""

from rnnlab.nn import init
from rnnlab.nn.cell import RNNCell, rnn_cell
from rnnlab.nn.fused import fused_layer
from rnnlab.nn.reference import reference_layer
from rnnlab.nn.rnn import RNN

__all__ = ["RNN", "RNNCell", "fused_layer", "init", "reference_layer", "rnn_cell"]
