"""The seed's experiments, each a config dataclass plus its model and data wiring.

`seq2seq` tags every step of a sequence ("hello" -> "ohlol"); `mnist` classifies MNIST or
Fashion-MNIST images read as 28 steps of 28 pixels. Each has `run(config, train_config)`,
and `saved` rebuilds a finished run's model for evaluation and prediction.
"""
