"""The experiments, each one module that declares itself as an `Experiment`.

`seq2seq` tags every step of a sequence ("hello" -> "ohlol"); `mnist` classifies MNIST or
Fashion-MNIST images read as 28 steps of 28 pixels; `lm` learns a text and writes more;
`langid` tells a word's language from its characters; `postag` tags the words of Brown's
sentences. `experiment` holds the declaration and what every experiment can do: train,
cross-validate, restore a saved run, score it again.
A new experiment is a new module here and one entry in EXPERIMENTS; the command line follows.
"""

from rnnlab.experiments import langid, lm, mnist, postag, seq2seq
from rnnlab.experiments.experiment import (
    Data,
    Experiment,
    Explain,
    RunCommand,
    SavedRun,
    cross_validate_experiment,
    evaluate_saved,
    restore,
    train,
)

EXPERIMENTS = (
    mnist.EXPERIMENT,
    lm.EXPERIMENT,
    seq2seq.EXPERIMENT,
    langid.EXPERIMENT,
    postag.EXPERIMENT,
)

__all__ = [
    "EXPERIMENTS",
    "Data",
    "Experiment",
    "Explain",
    "RunCommand",
    "SavedRun",
    "cross_validate_experiment",
    "evaluate_saved",
    "restore",
    "train",
]
