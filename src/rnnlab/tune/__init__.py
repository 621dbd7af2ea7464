"""rnnlab.tune: hyperparameter search for any experiment, on Optuna.

`space` turns an experiment's declared search space (and a user's changes to it) into Optuna's
distributions; `study` creates or joins a study, hands out its trial budget, and runs trials
(each an ordinary run of the experiment, or a cross-validation) in one or more processes on any
number of machines sharing its storage; `report` writes the trials table, the best settings as
a config file, Optuna's plots, and the summary. `rnnlab tune` (rnnlab.cli.tune) drives them.
"""

from rnnlab.tune.report import summarize
from rnnlab.tune.space import describe, merge, search_space
from rnnlab.tune.study import (
    DATABASE_FILE,
    PRUNERS,
    SAMPLERS,
    STUDY_FILE,
    TuneJob,
    check,
    final_run,
    open_storage,
    open_study,
    run_workers,
    shown_url,
    sqlite_url,
    threads_per_worker,
    write_study_file,
)

__all__ = [
    "DATABASE_FILE",
    "PRUNERS",
    "SAMPLERS",
    "STUDY_FILE",
    "TuneJob",
    "check",
    "describe",
    "final_run",
    "merge",
    "open_storage",
    "open_study",
    "run_workers",
    "search_space",
    "shown_url",
    "sqlite_url",
    "summarize",
    "threads_per_worker",
    "write_study_file",
]
