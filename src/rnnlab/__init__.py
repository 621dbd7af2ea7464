"""rnnlab: recurrent neural networks from their equations.

`rnnlab.RNNCell` and `rnnlab.RNN` are drop-ins for `torch.nn.RNNCell` and `torch.nn.RNN`;
`rnnlab.init` holds the recurrent-weight initialisers.
"""

from rnnlab.nn import RNN, RNNCell, init

__all__ = ["RNN", "RNNCell", "init"]
__version__ = "0.1.0"
