"""What a study leaves its user: the trials as a table (trials.csv), the best settings as a
file `rnnlab EXPERIMENT --config` accepts (best.yaml), Optuna's plots, and the summary that
`rnnlab tune` prints at its end and `rnnlab tune --report STUDY_DIR` prints again.

Everything is read from the study's storage and its plan, so the report of a study is the
same wherever it is made, while the study runs or after.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import optuna
import yaml
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

from rnnlab.files import SUMMARY_FILE, TEST_FILE, atomic_write
from rnnlab.options import declared_fields
from rnnlab.train import TrainConfig
from rnnlab.tune.study import BUDGET, PLAN, RUN, best_trial, final_run_name, quiet_experimental

TRIALS_FILE = "trials.csv"
BEST_CONFIG_FILE = "best.yaml"
# Optuna's plots, drawn by its matplotlib backend on the Agg canvas
PLOT_FILES = ("optimization_history.png", "param_importances.png", "parallel_coordinate.png")
IMPORTANCE_SEED = 0  # fANOVA's random forest: the same study gives the same importances


def best_settings(study: optuna.Study, trial: FrozenTrial) -> dict:
    """The study's settings with the trial's drawn values, in the shape of a run's
    config.json, which every training command's --config reads."""
    plan = study.user_attrs[PLAN]
    options = {f.name for f, _ in declared_fields(TrainConfig)}  # not limit_batches
    config = dict(plan["config"])
    train = {k: v for k, v in plan["train"].items() if k in options}
    for name, value in trial.params.items():
        (train if name in train else config)[name] = value
    return {"experiment": plan["experiment"], "config": config, "train": train}


def write_trials(study: optuna.Study, path: Path) -> None:
    """One row per trial: its number, state, objective, drawn settings, run folder, the
    trial it retries (if any) and how long it took."""
    plan = study.user_attrs[PLAN]
    params = list(plan["space"])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", "state", plan["objective"], *params, "run", "retry_of", "seconds"])
    for t in study.get_trials(deepcopy=False):
        seconds = t.duration.total_seconds() if t.duration is not None else ""
        writer.writerow(
            [
                t.number,
                t.state.name,
                "" if t.value is None else t.value,
                *(t.params.get(name, "") for name in params),
                t.user_attrs.get(RUN, ""),
                t.system_attrs.get("failed_trial", ""),
                seconds,
            ]
        )
    atomic_write(path, out.getvalue().encode())


def write_best_config(study: optuna.Study, trial: FrozenTrial, path: Path) -> None:
    plan = study.user_attrs[PLAN]
    header = (
        f"# The best settings of study {study.study_name}: trial {trial.number}, "
        f"{plan['objective']} {trial.value} on validation"
        + (f" (mean over {plan['folds']} folds)" if plan["folds"] else "")
        + f".\n# Rerun: rnnlab {plan['experiment']} --config {path.name}\n"
    )
    body = yaml.safe_dump(best_settings(study, trial), sort_keys=False)
    atomic_write(path, (header + body).encode())


def importances(study: optuna.Study) -> dict[str, float] | str:
    """Optuna's fANOVA importance of each drawn setting, or why there is none yet."""
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return "fewer than 2 complete trials"
    try:
        return optuna.importance.get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
        )
    except (ValueError, RuntimeError) as e:  # Optuna says why it cannot (all values equal...)
        return str(e).strip().splitlines()[0]


def save_plots(study: optuna.Study, study_dir: Path, importance: dict | str) -> list[str]:
    """Optuna's optimisation history, parameter importances and parallel coordinates as
    PNG files in the study folder; the names of those it could draw."""
    import matplotlib

    matplotlib.use("Agg")  # files only, whatever display the machine has
    from matplotlib import pyplot as plt
    from optuna.visualization import matplotlib as plots

    metric = study.user_attrs[PLAN]["objective"]
    draw = {
        "optimization_history.png": lambda: plots.plot_optimization_history(
            study, target_name=metric
        ),
        "parallel_coordinate.png": lambda: plots.plot_parallel_coordinate(
            study, target_name=metric
        ),
    }
    if isinstance(importance, dict):
        draw["param_importances.png"] = lambda: plots.plot_param_importances(
            study,
            evaluator=FanovaImportanceEvaluator(seed=IMPORTANCE_SEED),
            target_name=metric,
        )
    if best_trial(study) is None:
        return []
    saved = []
    for name in PLOT_FILES:
        if name not in draw:
            continue
        with quiet_experimental(), warnings.catch_warnings():
            # an axis of one value (a setting drawn from one choice, or all trials scoring the
            # same): matplotlib widens it and says so; the picture is right as it is
            warnings.filterwarnings("ignore", "Attempting to set identical", UserWarning)
            ax = draw[name]()
        figure = ax.figure
        figure.set_size_inches(8, 5)
        figure.savefig(study_dir / name, dpi=100, bbox_inches="tight")
        plt.close(figure)
        saved.append(name)
    return saved


def summarize(study: optuna.Study, study_dir: Path, where: str, plots: bool = True) -> str:
    """Write trials.csv, best.yaml and (with `plots`) Optuna's plots into `study_dir`; the
    summary to print."""
    plan = study.user_attrs[PLAN]
    trials = study.get_trials(deepcopy=False)
    counts = {s: sum(t.state == s for t in trials) for s in TrialState}
    # A trial closed unrun in a race for the last ticket holds none: not one of the budget.
    unrun = sum(RUN not in t.user_attrs for t in trials)
    direction = "minimised" if study.direction.name == "MINIMIZE" else "maximised"
    objective = f"{plan['objective']} on validation, {direction}" + (
        f", mean over {plan['folds']} folds" if plan["folds"] else ""
    )
    lines = [
        f"study {study.study_name} of {plan['experiment']} ({where}): "
        f"{study.user_attrs.get(BUDGET, 0)} trials in its budget; "
        + ", ".join(
            f"{counts[s]} {label}"
            for s, label in (
                (TrialState.COMPLETE, "complete"),
                (TrialState.PRUNED, "pruned"),
                (TrialState.FAIL, "failed"),
                (TrialState.RUNNING, "running"),
                (TrialState.WAITING, "waiting"),
            )
            if counts[s]
        )
        + (f" ({unrun} of the failed closed unrun: no ticket was left)" if unrun else ""),
        f"objective: {objective}",
    ]
    study_dir.mkdir(parents=True, exist_ok=True)
    write_trials(study, study_dir / TRIALS_FILE)
    files = [TRIALS_FILE]
    best = best_trial(study)
    if best is None:
        lines.append("best: no trial has completed yet")
    else:
        drawn = ", ".join(f"{k} {_shown(v)}" for k, v in best.params.items())
        lines.append(
            f"best: trial {best.number} ({best.user_attrs[RUN]}), {plan['objective']} "
            f"{best.value:.6g}: {drawn}"
        )
        write_best_config(study, best, study_dir / BEST_CONFIG_FILE)
        files.append(BEST_CONFIG_FILE)
    importance = importances(study)
    if isinstance(importance, dict):
        lines.append(
            "importances (fANOVA): " + ", ".join(f"{k} {v:.2f}" for k, v in importance.items())
        )
    else:
        lines.append(f"importances: none ({importance})")
    if best is not None:
        final = study_dir / final_run_name(best)
        if (final / TEST_FILE).is_file():
            scores = json.loads((final / TEST_FILE).read_text())
            lines.append(
                f"test split, once, the best settings trained again ({final.name}): "
                f"accuracy {scores['test_acc']:.2%}, loss {scores['test_loss']:.4f}"
            )
        elif (final / SUMMARY_FILE).is_file():
            lines.append(f"test split: none in this data ({final.name} is trained)")
        else:
            lines.append("test split: not scored (the study's final run does it)")
    if plots:
        files.extend(save_plots(study, study_dir, importance))
    lines.append(f"files in {study_dir}: {', '.join(files)}")
    return "\n".join(lines)


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
