"""rnnlab.nn: the recurrent cells and multi-layer modules (Elman RNN, GRU, LSTM), from their
equations. Imports only torch."""

from rnnlab.nn import init
from rnnlab.nn.cell import GRUCell, LSTMCell, RNNCell, RNNCellBase
from rnnlab.nn.fused import fused_layer
from rnnlab.nn.reference import reference_layer
from rnnlab.nn.rnn import GRU, LSTM, RNN, RNNBase
from rnnlab.nn.spec import SPECS, CellSpec, LayerWeights, gru_cell, lstm_cell, rnn_cell

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "SPECS",
    "CellSpec",
    "GRUCell",
    "LSTMCell",
    "LayerWeights",
    "RNNBase",
    "RNNCell",
    "RNNCellBase",
    "fused_layer",
    "gru_cell",
    "init",
    "lstm_cell",
    "reference_layer",
    "rnn_cell",
]
