"""The cross-validation loop: for each fold a fresh model, trained on k-1 folds by `fit` and
validated on the held-out one.

It knows no experiment: it takes a model factory, a Dataset, the labels to stratify by (if
any) and a loader factory. Fold i is an ordinary run folder, <out_dir>/<name>/fold-<i>/; its
fold.json, written atomically once the fold is trained (and tested), marks it done, so running
again skips it and resumes the others from their checkpoints. Folds run here, in `workers`
processes, or are shared out between torchrun's ranks; a fold's seeds come from (seed, fold)
alone, so its result does not depend on where it ran.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from rnnlab.crossval.folds import fold_indices
from rnnlab.crossval.summary import plot_fold_curves, summarize_folds
from rnnlab.files import BEST_FILE, atomic_write
from rnnlab.train import (
    RunRecord,
    TrainConfig,
    cross_entropy,
    evaluate,
    fit,
    load_checkpoint,
    seed_everything,
    settings_diff,
)
from rnnlab.train.checkpoint import content_digest
from rnnlab.train.distributed import in_process_group, launch_rank_and_world, use_local_gpu
from rnnlab.train.run_dir import fill_legacy_defaults

FOLD_FILE = "fold.json"  # in a fold's folder: its result, written last; the fold is done
PLAN_FILE = "cv_plan.json"  # what the folds are; a later run must match it to continue them
CV_FILE = "cv.json"
CURVES_FILE = "cv_curves.png"
POLL_SECONDS = 2.0  # how often rank 0 looks for the other ranks' fold.json files

# make_loader(dataset, shuffle=...) -> a DataLoader of (inputs, targets) batches
LoaderFactory = Callable[..., DataLoader]


@dataclass
class FoldResult:
    fold: int  # 0..k-1
    seed: int  # the fold's seed, from (cv seed, fold)
    train_size: int  # samples trained on: the other k-1 folds
    val_size: int  # samples in the held-out fold
    best_epoch: int  # the epoch whose model is in best.pt
    val_acc: float  # validation accuracy of that epoch
    val_loss: float  # and its validation loss
    epochs: int  # epochs trained
    seconds: float  # training time, summed over the epochs in metrics.jsonl
    threads: int  # torch's intra-op threads it trained with (see cross_validate on equality)
    test_acc: float | None = None  # best.pt on the test split, when one was given
    test_loss: float | None = None

    @classmethod
    def read(cls, path: Path) -> FoldResult:
        try:
            values = json.loads(path.read_text())
            return cls(**{f.name: values[f.name] for f in fields(cls)})
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(
                f"{path} is not a fold result ({type(e).__name__}: {e}); delete it to redo the fold"
            ) from e


@dataclass
class CVResult:
    run_dir: Path  # <out_dir>/<name>: cv.json, cv_curves.png and the fold-<i> folders
    folds: list[FoldResult]  # in fold order
    summary: dict[str, dict[str, float]]  # metric -> {"mean", "std"} over the folds


@dataclass
class _FoldJob:
    """Everything a fold needs, picklable so that a worker process can run it."""

    build_model: Callable[[], nn.Module]
    dataset: Dataset
    splits: list[tuple[np.ndarray, np.ndarray]]  # (train, valid) indices per fold
    config: TrainConfig  # the cross-validation's; each fold gets its own name, seed, resume
    make_loader: LoaderFactory
    test_dataset: Dataset | None
    loss_fn: Callable
    class_names: list[str] | None
    record: RunRecord | None  # what each fold's config.json holds
    best_by: str  # the validation metric that picks each fold's best.pt
    after_epoch: Callable[[int, dict], None] | None  # told (fold, record) after each epoch


def fold_seed(seed: int, fold: int) -> int:
    """Fold `fold`'s seed: a 32-bit number drawn from (seed, fold) by numpy's SeedSequence, so
    folds get unrelated streams and the same (seed, fold) always the same one."""
    return int(np.random.SeedSequence((seed, fold)).generate_state(1)[0])


def fold_dir(run_dir: str | os.PathLike, fold: int) -> Path:
    return Path(run_dir) / f"fold-{fold}"


def cross_validate(
    build_model: Callable[[], nn.Module],
    dataset: Dataset,
    labels=None,
    *,
    folds: int = 5,
    config: TrainConfig,
    make_loader: LoaderFactory,
    shuffle: bool = True,
    test_dataset: Dataset | None = None,
    workers: int = 1,
    loss_fn: Callable = cross_entropy,
    class_names: list[str] | None = None,
    record: RunRecord | None = None,
    best_by: str = "val_acc",
    legacy_defaults: dict | None = None,
    after_epoch: Callable[[int, dict], None] | None = None,
) -> CVResult | None:
    """k-fold cross-validation of the model `build_model()` on `dataset`, by `fit`.

    Fold i trains a model built afresh (after seeding with `fold_seed(config.seed, i)`) on the
    other folds and validates it on fold i, in <out_dir>/<name>/fold-<i>/ with config's
    training settings; with `test_dataset` its best epoch is also scored on that. A fold whose
    fold.json exists is not run again; one with a checkpoint continues from it. At the end
    <out_dir>/<name>/ gets cv.json (per-fold metrics, mean and std, the settings and `record`)
    and cv_curves.png (each fold's validation accuracy per epoch; unless config.plots is off).

    **Arguments:**
    - `build_model`: a zero-argument factory of a fresh model, picklable when `workers` > 1
      (a module-level function or a functools.partial of one).
    - `dataset`: the samples to fold, a map-style Dataset of n (inputs, target) items.
    - `labels`: (n,) class of each sample, to stratify the folds by; None for plain KFold.
    - `make_loader(dataset, shuffle=...)`: a DataLoader over a subset; a torch.Generator on it
      (or its sampler) is seeded by `fit`, as for any run.
    - `shuffle`: permute the samples (by config.seed) before folding; else contiguous folds.
    - `workers`: folds run in this many processes at once, each with an equal share of
      torch's threads (spawned: a script calling this needs `if __name__ == "__main__":`
      around its entry point, as for any spawned process). Under torchrun (WORLD_SIZE > 1)
      rank r runs folds r, r+W, ... and rank 0 waits for the others' fold.json files before
      it writes cv.json.
    - `record`: the run record each fold folder's config.json holds (the experiment, its
      settings, its data), so `evaluate` and `predict` accept a fold folder. Its settings are
      part of the plan: with the split and training settings they must match a previous
      run's to continue it.
    - `best_by`: the validation metric that picks each fold's best epoch (see `fit`).
    - `legacy_defaults`: what the experiment's options added since meant before (see
      `fill_legacy_defaults`), so that a plan written before them continues.
    - `after_epoch(fold, record)`: `fit`'s hook for each fold (picklable when `workers` > 1);
      what it raises stops the cross-validation there.

    A fold's result is the same wherever it runs (here, in a worker, on any rank) as long as
    it trains with the same number of torch threads, which fold.json records: the thread
    count changes the order of floating-point sums in torch's CPU kernels, and after an epoch
    the metrics differ in the third digit. So `workers=2` on two threads equals a sequential
    run on one thread (`--threads 1`) bit for bit, not one on two.

    **Returns:** a CVResult; None on torchrun ranks other than 0, which only run their folds.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if in_process_group():
        raise RuntimeError(
            "cross_validate runs each fold as an independent single-process training and shares "
            "folds out by the RANK and WORLD_SIZE variables; torch.distributed must not be "
            "initialised (fit would sum the metrics of ranks training different folds)"
        )
    n = len(dataset)
    splits = fold_indices(n, folds, labels=labels, shuffle=shuffle, seed=config.seed)
    run_dir = Path(config.out_dir) / config.name
    plan = {
        "folds": folds,
        "samples": n,
        "stratified": labels is not None,
        "shuffle": shuffle,
        "seed": config.seed,
        "valid_indices_sha256": content_digest([torch.from_numpy(v) for _, v in splits]),
        "train": config.settings(),
        "run": record.settings() if record is not None else {},
    }
    plan = json.loads(json.dumps(plan))  # as it reads back from the file: tuples become lists
    _check_plan(run_dir, plan, legacy_defaults)

    rank, world = launch_rank_and_world()
    use_local_gpu()
    mine = list(range(rank, folds, world))
    done = {
        i: FoldResult.read(fold_dir(run_dir, i) / FOLD_FILE) for i in mine if _is_done(run_dir, i)
    }
    todo = [i for i in mine if i not in done]
    for i in sorted(done):
        print(f"fold {i}: finished earlier ({fold_dir(run_dir, i) / FOLD_FILE}), skipped")
    workers = min(workers, len(todo)) or 1
    job = _FoldJob(
        build_model=build_model,
        dataset=dataset,
        splits=splits,
        config=replace(config, progress=config.progress and workers == 1),
        make_loader=make_loader,
        test_dataset=test_dataset,
        loss_fn=loss_fn,
        class_names=class_names,
        record=record,
        best_by=best_by,
        after_epoch=after_epoch,
    )
    if workers == 1:
        ran = {i: run_fold(job, i) for i in todo}
    else:
        ran = _run_parallel(job, todo, workers)
    if rank != 0:
        return None

    results = {**done, **ran}
    _wait_for_folds(run_dir, [i for i in range(folds) if i not in results])
    results.update(
        {
            i: FoldResult.read(fold_dir(run_dir, i) / FOLD_FILE)
            for i in range(folds)
            if i not in results
        }
    )
    per_fold = [results[i] for i in range(folds)]
    summary = summarize_folds([asdict(r) for r in per_fold])
    cv = {
        "run": config.name,
        **plan,
        "train": config.to_dict(),
        "per_fold": [asdict(r) for r in per_fold],
        "summary": summary,
    }
    atomic_write(run_dir / CV_FILE, (json.dumps(cv, indent=2) + "\n").encode())
    if config.plots:
        plot_fold_curves([fold_dir(run_dir, i) for i in range(folds)], run_dir / CURVES_FILE)
    return CVResult(run_dir, per_fold, summary)


def run_fold(job: _FoldJob, fold: int) -> FoldResult:
    """Train (or finish training) fold `fold` from fresh weights and write its fold.json."""
    config = job.config
    root = Path(config.out_dir) / config.name
    seed = fold_seed(config.seed, fold)
    fold_config = replace(
        config, name=fold_dir(root, fold).name, out_dir=str(root), seed=seed, resume=True
    )
    train_idx, valid_idx = job.splits[fold]
    with contextlib.redirect_stdout(LinePrefix(sys.stdout, f"fold {fold} | ")):
        print(
            f"training on {len(train_idx)} samples, validating on {len(valid_idx)}, "
            f"seed {seed}, {torch.get_num_threads()} thread(s)"
        )
        # Seeded before building, so the fresh weights depend on (seed, fold) only; fit seeds
        # everything again with the same number before its first batch.
        seed_everything(seed)
        model = job.build_model()
        fitted = fit(
            model,
            job.make_loader(Subset(job.dataset, train_idx.tolist()), shuffle=True),
            job.make_loader(Subset(job.dataset, valid_idx.tolist()), shuffle=False),
            fold_config,
            loss_fn=job.loss_fn,
            class_names=job.class_names,
            record=job.record,
            best_by=job.best_by,
            after_epoch=None if job.after_epoch is None else partial(job.after_epoch, fold),
        )
        best = next(r for r in fitted.history if r["epoch"] == fitted.best_epoch)
        result = FoldResult(
            fold=fold,
            seed=seed,
            train_size=len(train_idx),
            val_size=len(valid_idx),
            best_epoch=fitted.best_epoch,
            val_acc=best["val_acc"],
            val_loss=best["val_loss"],
            epochs=len(fitted.history),
            seconds=sum(r["seconds"] for r in fitted.history),
            threads=torch.get_num_threads(),
        )
        if job.test_dataset is not None:
            # best.pt is always there: a finite first epoch is the best so far.
            model.load_state_dict(load_checkpoint(fitted.run_dir / BEST_FILE)["model"])
            test = evaluate(
                model,
                job.make_loader(job.test_dataset, shuffle=False),
                loss_fn=job.loss_fn,
                limit_batches=config.limit_batches,
            )
            result.test_acc, result.test_loss = test.accuracy, test.loss
            print(
                f"test accuracy {test.accuracy:.2%} (loss {test.loss:.4f}), "
                f"model of epoch {fitted.best_epoch}"
            )
        path = fitted.run_dir / FOLD_FILE
        atomic_write(path, (json.dumps(asdict(result), indent=2) + "\n").encode())
    return result


# The job a worker process runs folds of, set once by the pool's initializer.
_WORKER_JOB: _FoldJob | None = None


def _start_worker(job: _FoldJob, threads: int) -> None:
    global _WORKER_JOB
    torch.set_num_threads(threads)
    use_local_gpu()
    _WORKER_JOB = job


def _run_in_worker(fold: int) -> FoldResult:
    return run_fold(_WORKER_JOB, fold)


def _run_parallel(job: _FoldJob, todo: list[int], workers: int) -> dict[int, FoldResult]:
    """Run the folds `todo` in `workers` processes; the results in fold order.

    The processes are spawned, not forked: a fresh interpreter takes its share of threads
    before torch starts its thread pool, and nothing of the parent's threads (torch's OpenMP
    pool, tqdm's monitor) is copied in a state that can deadlock the child. The price is an
    import of torch per worker and one pickled copy of the job (dataset included) each.
    """
    threads = max(1, torch.get_num_threads() // workers)
    print(f"{len(todo)} fold(s) in {workers} processes of {threads} thread(s) each")
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(job, threads),
    )
    try:
        futures = {i: pool.submit(_run_in_worker, i) for i in todo}
        return {i: futures[i].result() for i in todo}
    finally:
        # On a failure, folds not yet started are dropped; running ones finish (and are kept).
        pool.shutdown(wait=True, cancel_futures=True)


def _is_done(run_dir: Path, fold: int) -> bool:
    return (fold_dir(run_dir, fold) / FOLD_FILE).is_file()


def _wait_for_folds(run_dir: Path, folds: list[int]) -> None:
    """Block until every fold in `folds` has its fold.json (written by other ranks).

    No timeout: torchrun stops every rank when one fails, this one included.
    """
    if folds:
        print(f"waiting for fold(s) {folds} from the other ranks")
    while any(not _is_done(run_dir, i) for i in folds):
        time.sleep(POLL_SECONDS)


def _check_plan(run_dir: Path, plan: dict, legacy_defaults: dict | None) -> None:
    """Write run_dir/cv_plan.json, or check that the one there describes the same folds."""
    path = run_dir / PLAN_FILE
    if path.is_file():
        saved = fill_legacy_defaults(json.loads(path.read_text()))
        if saved.get("run"):
            saved["run"] = fill_legacy_defaults(saved["run"], legacy_defaults)
        changed = settings_diff(saved, plan)
        if changed:
            raise ValueError(
                f"{run_dir} holds a cross-validation with other settings ({'; '.join(changed)}); "
                f"run it with its own settings to continue it, or choose another name"
            )
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(plan, indent=2) + "\n").encode())


class LinePrefix(io.TextIOBase):
    """A text stream that writes to `stream` with `prefix` before every line."""

    def __init__(self, stream, prefix: str) -> None:
        self._stream, self._prefix, self._at_line_start = stream, prefix, True

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        out = []
        for line in text.splitlines(keepends=True):
            if self._at_line_start:
                out.append(self._prefix)
            out.append(line)
            self._at_line_start = line.endswith("\n")
        self._stream.write("".join(out))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()
