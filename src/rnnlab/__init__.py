"""rnnlab: recurrent neural networks from their equations.

`rnnlab.RNN`, `rnnlab.GRU` and `rnnlab.LSTM` are drop-ins for torch.nn's modules of those
names, `rnnlab.RNNCell`, `rnnlab.GRUCell` and `rnnlab.LSTMCell` for its cells; `rnnlab.init`
holds the recurrent-weight initialisers.
"""

from rnnlab.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, init

__all__ = ["GRU", "LSTM", "RNN", "GRUCell", "LSTMCell", "RNNCell", "init"]
__version__ = "0.1.0"
