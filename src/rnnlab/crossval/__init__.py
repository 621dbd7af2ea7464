"""rnnlab.crossval: k-fold splits, and the loop that trains a fresh model on each fold.

`get_k_fold_data` is the tutorial's split without its dropped rows; `fold_indices` gives seeded,
optionally stratified folds through scikit-learn; `cross_validate` runs `rnnlab.train.fit`
once per fold (resumable, in parallel processes or torchrun ranks) and writes cv.json. It knows
no experiment: the command line hands it a model factory, the data and a loader factory.
"""

from rnnlab.crossval.folds import fold_bounds, fold_indices, get_k_fold_data
from rnnlab.crossval.loop import (
    CURVES_FILE,
    CV_FILE,
    FOLD_FILE,
    CVResult,
    FoldResult,
    LinePrefix,
    cross_validate,
    fold_dir,
    fold_seed,
)
from rnnlab.crossval.summary import format_table, plot_fold_curves, summarize_folds

__all__ = [
    "CURVES_FILE",
    "CV_FILE",
    "FOLD_FILE",
    "CVResult",
    "FoldResult",
    "LinePrefix",
    "cross_validate",
    "fold_bounds",
    "fold_dir",
    "fold_indices",
    "fold_seed",
    "format_table",
    "get_k_fold_data",
    "plot_fold_curves",
    "summarize_folds",
]
