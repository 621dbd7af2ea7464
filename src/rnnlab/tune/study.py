"""A study: Optuna's search over an experiment's settings, in which every trial is an
ordinary run of the experiment (or an ordinary cross-validation) in the study's folder.

    runs/tune-seq2seq/          the study folder (--out-dir, --name)
      study.db                  Optuna's storage, unless --storage names a database
      study.json                the study's name and storage, for `rnnlab tune --report`
      trial-0/ trial-1/ ...     a run folder per trial (fold-<i> folders under --folds)
      best-trial-7/             the best settings trained once more and scored on the test split

The budget is handed out as tickets: a study of N trials starts with N waiting trials in its
storage, and a worker takes one by Optuna's own atomic step (`Study.ask` pops a waiting trial),
so any number of processes on any number of machines run N trials in all, none twice. A worker
that dies mid-trial stops its heartbeat; Optuna then fails that trial and queues a copy with
the same settings (`RetryHeartbeatStaleTrialCallback`), which carries the ticket's run folder
and continues the run from its last checkpoint. Ctrl-C queues the copy at once. The objective
is the experiment's `best_by` metric on validation (the mean over folds under --folds); a
trial never sees the test split, which only the final run is scored on.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from rnnlab.crossval import LinePrefix
from rnnlab.experiments import Experiment, cross_validate_experiment, train
from rnnlab.experiments.experiment import check_cv_settings
from rnnlab.files import TEST_FILE, atomic_write
from rnnlab.train import NonFiniteLossError, TrainConfig, settings_diff
from rnnlab.tune.space import as_json, sample

STUDY_FILE = "study.json"  # in the study folder: the study's name and where it is stored
DATABASE_FILE = "study.db"  # the default storage, an SQLite file in the study folder
RUN = "run"  # a trial's user attribute: its run folder; a trial without one holds no ticket
PLAN = "plan"  # the study's user attribute: what defines it (experiment, settings, space)
BUDGET = "trials"  # the study's user attribute: tickets handed out so far
TABLE_RACE_TRIES = 5  # attempts to open a database whose tables another worker is creating
PLAN_WAIT_S = 60.0  # how long a joining worker waits for the study's creator to finish
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")


class NoTicketLeft(Exception):
    """A worker asked for a trial just as another took the last ticket: Optuna made a fresh
    trial, which is closed unrun (failed, holding no ticket) and ends that worker's search."""


@dataclass(frozen=True)
class TuneJob:
    """Everything a study's worker needs; picklable, so that spawned processes get it whole."""

    experiment: Experiment
    config: Any  # the experiment's settings every trial starts from
    train_config: TrainConfig  # the training settings likewise; name/out_dir: the study folder
    space: dict[str, BaseDistribution]  # what each trial draws, by option name
    trials: int  # the study's budget: trials in all
    folds: int = 0  # 0: a trial is one run; K: a K-fold cross-validation
    storage: str | None = None  # a database URL; None: study.db in the study folder
    sampler: str = "tpe"
    sampler_seed: int = 0
    pruner: str = "median"
    heartbeat: int = 10  # seconds between a running trial's signs of life
    timeout: float = 0.0  # seconds after which no trial starts; 0: none
    threads: int | None = None  # torch threads of each trial and the final run; None: torch's
    test: bool = True  # train the best settings once more and score them on the test split

    @property
    def study_dir(self) -> Path:
        return Path(self.train_config.out_dir) / self.train_config.name

    @property
    def study_name(self) -> str:
        return self.train_config.name

    @property
    def direction(self) -> str:
        return "minimize" if self.experiment.best_by.endswith("loss") else "maximize"

    def storage_url(self) -> str:
        return self.storage or sqlite_url(self.study_dir)

    def plan(self) -> dict:
        """What defines the study: a later run, or a worker elsewhere, must agree on it (but
        not on where its data is: the fields a run record leaves out of its settings)."""
        config = asdict(self.config)
        for name in self.experiment.where_fields:
            config.pop(name, None)
        return json.loads(
            json.dumps(
                {
                    "experiment": self.experiment.name,
                    "objective": self.experiment.best_by,
                    "folds": self.folds,
                    "config": config,
                    "train": self.train_config.settings(),
                    "space": as_json(self.space),
                }
            )
        )


def sqlite_url(study_dir: Path) -> str:
    return f"sqlite:///{(Path(study_dir) / DATABASE_FILE).resolve()}"


@contextlib.contextmanager
def quiet_experimental() -> Iterator[None]:
    """Optuna's heartbeat, its retry of dead trials and its matplotlib plots have been marked
    experimental for years; the warning tells rnnlab's users nothing they can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


def open_storage(url: str, heartbeat: int) -> RDBStorage:
    """The study's database, with heartbeats and the retry of dead trials; a URL that cannot
    be opened is one line naming it (its password hidden)."""
    import sqlalchemy

    shown = shown_url(url)
    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # several local processes share the file: wait for its lock rather than fail at once
        engine["connect_args"] = {"timeout": 60}
    elif url.startswith("postgresql"):
        engine["connect_args"] = {"connect_timeout": 10}
    for attempt in range(TABLE_RACE_TRIES):
        try:
            with quiet_experimental():
                storage = RDBStorage(
                    url,
                    engine_kwargs=engine,
                    heartbeat_interval=heartbeat,
                    grace_period=2 * heartbeat,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                        inherit_intermediate_values=True
                    ),
                )
            if storage.engine.name == "sqlite":
                _lock_on_begin(storage.engine)
            return storage
        except sqlalchemy.exc.IntegrityError:
            # Workers started together on an empty database all create Optuna's tables;
            # all but one collide. The tables are there now: open them again.
            if attempt == TABLE_RACE_TRIES - 1:
                raise
            time.sleep(1.0)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"cannot open the study's database {shown} ({first})") from None
    raise AssertionError("unreachable")


def _lock_on_begin(engine) -> None:
    """Make every SQLite transaction take the database's write lock when it begins.

    Optuna hands out a waiting trial by reading that it waits and then marking it running,
    in one transaction; PostgreSQL locks the row it read (SELECT ... FOR UPDATE), but SQLite
    has no row locks, and in its default deferred transactions two processes can both read
    'waiting' and both take the trial. BEGIN IMMEDIATE (SQLAlchemy's recipe for pysqlite:
    the driver's own BEGIN switched off, ours emitted) serialises them, so each trial is
    taken once; the 60 s busy timeout makes the others wait their turn."""
    import sqlalchemy

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_driver_begin(dbapi_connection, record) -> None:
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners begin the old way


def shown_url(url: str) -> str:
    """`url` as it may be printed or saved: without its password."""
    import sqlalchemy

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return url
    parts = (parsed.host, parsed.port, parsed.database, parsed.query)
    bare = sqlalchemy.engine.URL.create(parsed.drivername, parsed.username, None, *parts)
    return bare.render_as_string(hide_password=False)


def open_study(job: TuneJob) -> optuna.Study:
    """Create the study with its plan and its tickets, or join the one of that name: it must
    be a study of this experiment with these settings and space. A larger --trials than the
    study's budget hands out the difference."""
    job.study_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(job.storage_url(), job.heartbeat)
    try:
        study = optuna.create_study(
            storage=storage, study_name=job.study_name, direction=job.direction
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=job.study_name, storage=storage)
        _check_plan(study, job)
    else:
        _issue_tickets(study, job.trials)
        study.set_user_attr(PLAN, job.plan())  # last: a joining worker waits for it
    return study


def _check_plan(study: optuna.Study, job: TuneJob) -> None:
    where = f"study {job.study_name} in {shown_url(job.storage_url())}"
    waited = 0.0
    while PLAN not in study.user_attrs:  # its creator is still handing out the tickets
        if waited >= PLAN_WAIT_S:
            raise ValueError(
                f"{where} has no plan: it was not made by `rnnlab tune`, or its maker died "
                f"while making it; choose another --name"
            )
        time.sleep(1.0)
        waited += 1.0
    plan = study.user_attrs[PLAN]
    if plan["experiment"] != job.experiment.name:
        raise ValueError(
            f"{where} is a study of {plan['experiment']!r}, not {job.experiment.name!r}; "
            f"choose another --name"
        )
    changed = settings_diff(plan, job.plan())
    if changed:
        raise ValueError(
            f"{where} was made with other settings ({'; '.join(changed)}); run it with its own "
            f"to continue it, or choose another --name"
        )
    _issue_tickets(study, job.trials)


def _issue_tickets(study: optuna.Study, trials: int) -> None:
    """Queue waiting trials until the study holds `trials` tickets. Two processes raising the
    budget at the same moment would both queue the difference: raise it from one place."""
    issued = study.user_attrs.get(BUDGET, 0)
    for k in range(issued, trials):
        study.enqueue_trial({}, user_attrs={RUN: f"trial-{k}"})
    if trials > issued:
        study.set_user_attr(BUDGET, trials)


def write_study_file(job: TuneJob) -> None:
    """study.json: what `rnnlab tune --report STUDY_DIR` opens (a database password is never
    written; libpq's PGPASSWORD or ~/.pgpass supplies it)."""
    record = {
        "study": job.study_name,
        "experiment": job.experiment.name,
        "storage": None if job.storage is None else shown_url(job.storage),
    }
    job.study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(job.study_dir / STUDY_FILE, (json.dumps(record, indent=2) + "\n").encode())


def run_workers(job: TuneJob, workers: int) -> None:
    """Run the study's trials in `workers` processes (this one when 1) until no ticket is left
    or the timeout has passed."""
    deadline = time.time() + job.timeout if job.timeout else None
    if workers == 1:
        work(job, 0, deadline)
        return
    job = replace(job, train_config=replace(job.train_config, progress=False))
    print(f"{workers} worker processes of {job.threads} thread(s) each")
    context = multiprocessing.get_context("spawn")  # a fresh torch per process, as cv's folds
    processes = [
        context.Process(target=_work_in_process, args=(job, i, deadline), name=f"worker-{i}")
        for i in range(workers)
    ]
    for p in processes:
        p.start()
    try:
        for p in processes:
            p.join()
    except KeyboardInterrupt:  # the workers got it too: each queues its trial again and ends
        for p in processes:
            p.join()
        raise
    failed = [f"{p.name} ended with exit status {p.exitcode}" for p in processes if p.exitcode]
    if not failed:
        return
    storage = open_storage(job.storage_url(), job.heartbeat)
    study = optuna.load_study(study_name=job.study_name, storage=storage)
    if study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)):
        raise ValueError(
            f"{'; '.join(failed)} before the study's end (see above); run the same command "
            f"again to continue it"
        )
    print(f"{'; '.join(failed)}; the other workers finished the study")


def _work_in_process(job: TuneJob, index: int, deadline: float | None) -> None:
    try:
        work(job, index, deadline)
    except (ValueError, OSError) as e:  # a user's mistake met by one trial: one line
        message = " ".join(str(e).split("\n"))
        print(f"rnnlab tune: worker-{index}: error: {message}", file=sys.stderr)
        sys.exit(2)


def work(job: TuneJob, index: int, deadline: float | None) -> None:
    """One worker: take tickets and run their trials until none is left. While other trials
    still run it waits, since one of them may belong to a worker that died and come back as
    a retry once its heartbeat is overdue."""
    if job.threads:
        torch.set_num_threads(job.threads)
    storage = open_storage(job.storage_url(), job.heartbeat)
    trials = optuna.load_study(study_name=job.study_name, storage=storage).get_trials()
    started = sum(t.state != TrialState.WAITING for t in trials)
    study = optuna.load_study(
        study_name=job.study_name,
        storage=storage,
        sampler=_sampler(job, index, started),
        pruner=_pruner(job),
    )
    objective = partial(run_trial, job)
    while deadline is None or time.time() < deadline:
        with quiet_experimental():
            fail_stale_trials(study)
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.optimize(
                objective,
                timeout=None if deadline is None else max(deadline - time.time(), 0.0),
                callbacks=[_stop_without_tickets],
                catch=(NonFiniteLossError, NoTicketLeft),
            )
        elif study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            time.sleep(job.heartbeat)
        else:
            return


def _stop_without_tickets(study: optuna.Study, trial) -> None:
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        study.stop()


def _sampler(job: TuneJob, worker: int, started: int) -> optuna.samplers.BaseSampler:
    """The sampler of one worker: seeded by (seed, worker, trials the study held when it
    started), so a fresh study with one worker draws the same trials for the same seed, while
    two workers, or a study run again, do not repeat each other's draws."""
    seed = int(np.random.SeedSequence((job.sampler_seed, worker, started)).generate_state(1)[0])
    if job.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(job: TuneJob) -> optuna.pruners.BasePruner:
    """Pruning by the per-epoch validation metric; a step is an epoch (of each fold in turn
    under --folds, whose splits every trial shares)."""
    if job.pruner == "median":
        return optuna.pruners.MedianPruner()
    if job.pruner == "hyperband":
        steps = job.train_config.epochs * max(job.folds, 1)
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=steps)
    return optuna.pruners.NopPruner()


def with_params(job: TuneJob, params: dict) -> tuple[Any, TrainConfig]:
    """The study's settings with a trial's drawn values on top."""
    train_fields = set(TrainConfig.__dataclass_fields__)
    config = replace(job.config, **{k: v for k, v in params.items() if k not in train_fields})
    train_config = replace(
        job.train_config, **{k: v for k, v in params.items() if k in train_fields}
    )
    return config, train_config


def run_trial(job: TuneJob, trial: optuna.Trial) -> float:
    """Optuna's objective: the trial's run (or cross-validation), its validation score."""
    if RUN not in trial.user_attrs:
        trial.study.stop()
        raise NoTicketLeft("no ticket was left: closed unrun")
    folder = trial.user_attrs[RUN]
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    config, train_config = with_params(job, sample(trial, job.space))
    # A retried trial continues its run folder: the run resumes from its last checkpoint.
    train_config = replace(train_config, name=folder, out_dir=str(job.study_dir), resume=True)
    metric = job.experiment.best_by
    epochs = train_config.epochs
    report = partial(_report, trial, metric, epochs * max(job.folds, 1))
    try:
        with contextlib.redirect_stdout(LinePrefix(sys.stdout, f"trial {trial.number} | ")):
            if job.folds:
                result = cross_validate_experiment(
                    job.experiment,
                    config,
                    train_config,
                    folds=job.folds,
                    after_epoch=lambda fold, r: report(fold * epochs + r["epoch"], r),
                )
                return result.summary[metric]["mean"]
            return train(
                job.experiment,
                config,
                train_config,
                explicit_name=True,
                threads=job.threads,
                scored=False,
                after_epoch=lambda record: report(record["epoch"], record),
            ).best_score
    except KeyboardInterrupt:  # stopped by hand: the same settings wait for the next worker
        frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
        with quiet_experimental():
            RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)(trial.study, frozen)
        raise


def _report(trial: optuna.Trial, metric: str, last: int, step: int, record: dict) -> None:
    """Tell Optuna an epoch's validation score; stop the trial if the pruner says so, unless
    the step is the `last` one: a finished trial has nothing left to save."""
    if metric not in record:
        raise ValueError(
            f"a trial's objective is {metric} on validation, and this run has no validation "
            f"split; give it one, or tune with --folds"
        )
    value = record[metric]
    if not math.isfinite(value):
        return  # the pruner compares finite scores; the loop keeps no non-finite best anyway
    trial.report(value, step)
    if step < last and trial.should_prune():
        raise optuna.TrialPruned(f"{metric} {value:.4f} at step {step}")


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return study.best_trial if complete else None


def final_run_name(trial: FrozenTrial) -> str:
    """The folder of the best trial's settings trained once more and scored on test."""
    return f"best-{trial.user_attrs[RUN]}"


def final_run(job: TuneJob, study: optuna.Study) -> None:
    """Train the best trial's settings once more, as an ordinary run of the experiment on the
    whole training split, and score it on the test split: the study's one look at test. Run
    again, it finds its folder and only reports (it resumes like any run)."""
    best = best_trial(study)
    if best is None:
        print("no trial completed: nothing to score on the test split")
        return
    if (job.study_dir / final_run_name(best) / TEST_FILE).is_file():
        return  # scored already: the same model scores the same, and says nothing new
    config, train_config = with_params(job, best.params)
    train_config = replace(
        train_config, name=final_run_name(best), out_dir=str(job.study_dir), resume=True
    )
    print(f"the best settings, trial {best.number}'s, trained once more and scored on test:")
    train(job.experiment, config, train_config, explicit_name=True, threads=job.threads)


def threads_per_worker(threads: int | None, workers: int) -> int | None:
    """Each of `workers` processes' equal share of `threads` (default torch's), or None for
    one process, which keeps `threads`. The final run trains with the same number, so it
    repeats the best trial exactly: the thread count changes the order of torch's float sums."""
    if workers <= 1:  # check() refuses fewer than one
        return threads
    return max(1, (threads or torch.get_num_threads()) // workers)


def check(job: TuneJob, workers: int) -> None:
    """Refuse, before anything starts, the settings a study cannot run with."""
    if job.trials < 1:
        raise ValueError(f"--trials must be at least 1, got {job.trials}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if job.heartbeat < 1:
        raise ValueError(f"--heartbeat must be at least 1 second, got {job.heartbeat}")
    if job.timeout < 0 or not math.isfinite(job.timeout):
        raise ValueError(f"--timeout must be a number of seconds >= 0, got {job.timeout}")
    if job.folds:
        check_cv_settings(job.experiment, job.config, job.folds)
    if not job.space:
        raise ValueError(
            f"the search space of {job.experiment.name} is empty: declare one, or give --space"
        )
