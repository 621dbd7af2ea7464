"""`rnnlab tune`: a study finds a planted optimum, draws the same trials for the same seed,
prunes, continues after a kill, shares one storage between worker processes (SQLite, and a
PostgreSQL server the test starts), and writes a best.yaml that reruns to the best trial's
result; every mistake a user can make is one line and exit status 2."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from torch import nn

import planted
from planted import ALL
from rnnlab.cli import main
from rnnlab.experiments import EXPERIMENTS
from rnnlab.train import TIMING_KEYS, TrainConfig, fit
from rnnlab.tune import search_space, sqlite_url

pytestmark = pytest.mark.usefixtures("no_network")

QUIET = ["--no-progress", "--no-plots"]
TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"


def tune(*args: str) -> int:
    return main(["tune", "planted", *args], experiments=ALL)


def study_of(study_dir: Path, url: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name=study_dir.name, storage=url or sqlite_url(study_dir))


def states(trials) -> dict[str, int]:
    return dict(Counter(t.state.name for t in trials))


def epochs_of(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in TIMING_KEYS} for x in lines]


def test_a_tiny_study_finds_the_planted_optimum(tmp_path, capsys):
    assert tune("--trials", "20", "--pruner", "none", "--out-dir", str(tmp_path), *QUIET) == 0
    study = study_of(tmp_path / "tune-planted")
    assert states(study.trials) == {"COMPLETE": 20}
    best = study.best_trial
    assert best.params["kind"] == "b" and abs(best.params["x"] - planted.OPTIMUM) < 0.05
    assert best.value == pytest.approx(planted.planted_loss(best.params["x"], "b"), rel=1e-6)
    # every trial's objective is its own run's validation loss, which the planted function sets
    for t in study.trials:
        assert t.value == pytest.approx(planted.planted_loss(**t.params), rel=1e-6)
        run = tmp_path / "tune-planted" / t.user_attrs["run"]
        assert not (run / "test.json").exists()  # a trial never sees the test split
    out = capsys.readouterr().out
    assert f"best: trial {best.number} (trial-{best.number}), val_loss" in out
    assert "test split, once, the best settings trained again" in out
    final = json.loads(
        (tmp_path / "tune-planted" / f"best-trial-{best.number}" / "test.json").read_text()
    )
    assert final["test_loss"] == pytest.approx(best.value, rel=1e-6)


def test_the_same_seed_draws_the_same_trials_and_another_seed_others(tmp_path):
    def drawn(name: str, seed: str) -> list[dict]:
        argv = ["--trials", "12", "--sampler-seed", seed, "--name", name, "--no-test"]
        assert tune(*argv, "--out-dir", str(tmp_path), *QUIET) == 0
        return [t.params for t in study_of(tmp_path / name).trials]

    first, again, other = drawn("a", "7"), drawn("b", "7"), drawn("c", "8")
    assert first == again
    assert first != other
    assert len({t["x"] for t in first}) == 12  # TPE past its 10 random startup trials too


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_a_trial_the_pruner_stops_keeps_the_epochs_it_ran(tmp_path, pruner):
    argv = ["--trials", "10", "--epochs", "3", "--pruner", pruner, "--no-test"]
    assert tune(*argv, "--out-dir", str(tmp_path), *QUIET) == 0
    study = study_of(tmp_path / "tune-planted")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert pruned and len(pruned) + len(complete) == 10
    for t in pruned:  # stopped after the epoch the pruner judged, that epoch kept
        last = max(t.intermediate_values)
        assert epochs_of(tmp_path / "tune-planted" / t.user_attrs["run"]) == list(
            range(1, last + 1)
        )
        assert last < 3
    for t in complete:
        assert epochs_of(tmp_path / "tune-planted" / t.user_attrs["run"]) == [1, 2, 3]


def test_fit_tells_after_epoch_each_record_and_an_exception_stops_it_there(tmp_path):
    told = []

    class Stop(Exception):
        pass

    def after_epoch(record: dict) -> None:
        told.append(record["epoch"])
        if record["epoch"] == 2:
            raise Stop

    data = planted.load_data(planted.PlantedConfig())
    loader = [(data.train.tensors[0], data.train.tensors[1])]
    config = TrainConfig(epochs=4, out_dir=str(tmp_path), name="run", progress=False, plots=False)
    model = nn.Linear(1, 2)
    with pytest.raises(Stop):
        fit(model, loader, loader, config, after_epoch=after_epoch)
    assert told == [1, 2]
    assert epochs_of(tmp_path / "run") == [1, 2]  # the epoch that raised is recorded and saved


def test_best_yaml_reruns_to_the_best_trials_result(tmp_path, capsys):
    out = str(tmp_path)
    argv = ["tune", "seq2seq", "--trials", "3", "--epochs", "4", "--out-dir", out, *QUIET]
    assert main(argv) == 0
    study_dir = tmp_path / "tune-seq2seq"
    best = study_of(study_dir).best_trial
    best_yaml = study_dir / "best.yaml"
    settings = yaml.safe_load(best_yaml.read_text())
    assert settings["config"]["hidden"] == best.params["hidden"]
    assert settings["train"]["lr"] == best.params["lr"]  # exactly: YAML keeps every digit
    assert main(["seq2seq", "--config", str(best_yaml), "--name", "again", "--out-dir", out]) == 0
    assert metrics(tmp_path / "again") == metrics(study_dir / best.user_attrs["run"])
    assert max(r["val_acc"] for r in metrics(tmp_path / "again")) == best.value
    # the report prints the same summary again from the study's storage
    capsys.readouterr()
    assert main(["tune", "--report", str(study_dir)]) == 0
    report = capsys.readouterr().out
    assert f"best: trial {best.number} (trial-{best.number})" in report
    assert "3 complete" in report and "importances (fANOVA): " in report
    for name in ("trials.csv", "optimization_history.png", "param_importances.png"):
        assert (study_dir / name).is_file()
    rows = (study_dir / "trials.csv").read_text().splitlines()
    assert rows[0] == "number,state,val_acc,cell,lr,hidden,embedding,run,retry_of,seconds"
    assert len(rows) == 4


def test_tune_dry_run_runs_two_trials_and_the_final_run_in_a_temporary_folder(capsys):
    assert main(["tune", "seq2seq", "--dry-run", *QUIET]) == 0
    out = capsys.readouterr().out
    assert "dry run: 2 batches, one epoch" in out
    assert "2 trials in its budget; 2 complete" in out
    assert "the best settings, trial" in out


def test_a_larger_budget_continues_the_study_where_it_was(tmp_path):
    argv = ["--pruner", "none", "--no-test", "--out-dir", str(tmp_path), *QUIET]
    assert tune("--trials", "3", *argv) == 0
    before = [t.params for t in study_of(tmp_path / "tune-planted").trials]
    assert tune("--trials", "5", *argv) == 0
    study = study_of(tmp_path / "tune-planted")
    assert states(study.trials) == {"COMPLETE": 5}
    assert [t.params for t in study.trials[:3]] == before
    assert tune("--trials", "5", *argv) == 0  # nothing left to do: nothing runs
    assert len(study_of(tmp_path / "tune-planted").trials) == 5


def test_a_timeout_stops_starting_trials_and_the_study_continues_later(tmp_path, capsys):
    # a trial takes two forwards of 1 s; the study's set-up well under 1.5 s even on a busy
    # machine: the first trial starts, no other
    argv = ["--trials", "4", "--pause", "1", "--pruner", "none", "--no-test"]
    argv += ["--out-dir", str(tmp_path), *QUIET]
    assert tune(*argv, "--timeout", "1.5") == 0
    study = study_of(tmp_path / "tune-planted")
    assert states(study.trials) == {"COMPLETE": 1, "WAITING": 3}
    assert "1 complete, 3 waiting" in capsys.readouterr().out
    assert tune(*argv) == 0
    assert states(study_of(tmp_path / "tune-planted").trials) == {"COMPLETE": 4}


def test_a_trial_asked_for_when_no_ticket_is_left_is_closed_unrun(tmp_path):
    """Two workers see one waiting trial, both ask: Optuna makes the loser a fresh trial,
    which holds no ticket; it must not run, and its worker stops."""
    from rnnlab.tune.study import NoTicketLeft, TuneJob, run_trial

    study = optuna.create_study()
    job = TuneJob(
        experiment=planted.PLANTED,
        config=planted.PlantedConfig(),
        train_config=TrainConfig(name="s", out_dir=str(tmp_path)),
        space={},
        trials=1,
    )
    study.optimize(partial(run_trial, job), n_trials=3, catch=(NoTicketLeft,))
    assert states(study.trials) == {"FAIL": 1}  # and the worker stopped: no second trial
    assert not (tmp_path / "s").exists()  # nothing trained


def test_the_objective_under_folds_is_the_mean_over_the_cross_validation(tmp_path):
    argv = ["--trials", "2", "--folds", "2", "--no-test", "--out-dir", str(tmp_path), *QUIET]
    assert tune(*argv) == 0
    for t in study_of(tmp_path / "tune-planted").trials:
        cv = json.loads((tmp_path / "tune-planted" / t.user_attrs["run"] / "cv.json").read_text())
        assert t.value == cv["summary"]["val_loss"]["mean"]
        assert sorted(t.intermediate_values) == [1, 2]  # fold 0's epoch, then fold 1's


def test_two_workers_on_one_sqlite_storage_run_each_trial_once(tmp_path, capsys):
    argv = ["--trials", "6", "--workers", "2", "--pause", "0.05", "--epochs", "2", "--no-test"]
    argv += ["--heartbeat", "5"]  # a worker out of tickets waits this long for the other
    assert tune(*argv, "--pruner", "none", "--out-dir", str(tmp_path), *QUIET) == 0
    study_dir = tmp_path / "tune-planted"
    study = study_of(study_dir)
    assert states(study.trials) == {"COMPLETE": 6}
    runs = sorted(t.user_attrs["run"] for t in study.trials)
    assert runs == [f"trial-{k}" for k in range(6)]
    assert sorted(p.name for p in study_dir.glob("trial-*")) == runs
    for run in runs:  # each run trained once: its epochs once each, never twice
        assert epochs_of(study_dir / run) == [1, 2]
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2  # both processes worked
    assert "2 worker processes" in capsys.readouterr().out


TAKER = """
import sys, time
import optuna
from rnnlab.tune.study import open_storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, count, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
study = optuna.load_study(study_name="s", storage=open_storage(url, heartbeat=10))
while time.time() < start:  # both processes ask at once
    time.sleep(0.01)
taken = []
for _ in range(count):
    trial = study.ask()
    taken.append(trial.number)
    study.tell(trial, 0.0)
print(taken)
"""


def test_two_processes_never_take_the_same_waiting_trial_from_sqlite(tmp_path):
    """Optuna takes a waiting trial by reading it waits, then marking it running; without
    rnnlab's BEGIN IMMEDIATE two SQLite clients both took trial 8 of 200 here."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    for _ in range(60):
        study.enqueue_trial({})
    start = str(time.time() + 8)  # after both have imported torch and opened the storage
    takers = [
        subprocess.Popen(
            [sys.executable, "-W", "ignore", "-c", TAKER, url, "30", start],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    taken = [json.loads(t.communicate(timeout=300)[0]) for t in takers]
    assert [t.returncode for t in takers] == [0, 0]
    assert sorted(taken[0] + taken[1]) == list(range(60))  # each once, and no new one made


def planted_command(*args: str) -> list[str]:
    return [sys.executable, str(TESTS / "planted.py"), "tune", "planted", *args]


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_study_killed_mid_trial_resumes_to_n_complete_trials(tmp_path, how):
    """kill -9 (or Ctrl-C) in the middle of trial 1, then the same command again: the dead
    trial is failed and retried with its settings in its own folder, resumed from its
    checkpoint."""
    # heartbeat 2: the dead trial is retried 4 s after its last sign of life
    argv = ["--trials", "3", "--epochs", "4", "--pause", "0.15", "--heartbeat", "2"]
    argv += ["--pruner", "none", "--no-test", "--threads", "1", "--out-dir", str(tmp_path)]
    study_dir = tmp_path / "tune-planted"
    metrics_1 = study_dir / "trial-1" / "metrics.jsonl"
    process = subprocess.Popen(
        planted_command(*argv, *QUIET),
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: metrics_1.is_file() and metrics_1.read_text().count("\n") >= 1,
            120,
            "trial 1's first epoch",
        )
        process.send_signal(how)
        process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
    killed = next(t for t in study_of(study_dir).trials if t.user_attrs.get("run") == "trial-1")
    # kill -9: running, as it was when it died; Ctrl-C: failed, its copy queued at once
    assert killed.state == (TrialState.RUNNING if how == signal.SIGKILL else TrialState.FAIL)
    assert tune(*argv, *QUIET) == 0
    study = study_of(study_dir)
    assert states(study.trials) == {"COMPLETE": 3, "FAIL": 1}
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.user_attrs["run"] == "trial-1"
    assert epochs_of(study_dir / "trial-1") == [1, 2, 3, 4]  # resumed: no epoch twice
    assert sorted(p.name for p in study_dir.glob("trial-*")) == ["trial-0", "trial-1", "trial-2"]


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("hiden: [1, 2]\n", "unknown option 'hiden'; expected some of"),
        ("x: {low: 0.8, high: 0.2}\n", "x: the range is empty: low 0.8 > high 0.2"),
        ("x: []\n", "x: an empty list of choices"),
        ("kind: [a, z]\n", "kind: 'z' is not one of a, b, c"),
        ("x: {low: 0, high: 1, log: true}\n", "x: a log range needs low > 0"),
        ("lr: {low: 1e-4, high: 0.1}\n", "YAML reads 1e-4 as text: write 1.0e-4"),
        ("x: {low: 0, high: 20}\n", "x: 20.0 is refused: x must be <= 10.0"),
        ("kind: {low: 0, high: 1}\n", "a str option takes a list of choices"),
        ("x: {lo: 0, high: 1}\n", "unknown key 'lo'"),
        ("- x\n", "--space"),
    ],
)
def test_a_bad_space_file_is_one_line_and_exit_status_2(tmp_path, capsys, space, message):
    path = tmp_path / "space.yaml"
    path.write_text(space)
    assert tune("--space", str(path), "--out-dir", str(tmp_path), *QUIET) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "tune-planted").exists()  # refused before anything started


def test_a_space_file_narrows_and_removes_entries(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("x: {low: 0.25, high: 0.35}\nkind: null\n")
    argv = ["--trials", "3", "--space", str(path), "--kind", "b", "--no-test"]
    assert tune(*argv, "--out-dir", str(tmp_path), *QUIET) == 0
    for t in study_of(tmp_path / "tune-planted").trials:
        assert list(t.params) == ["x"] and 0.25 <= t.params["x"] <= 0.35
        assert t.value == pytest.approx(planted.planted_loss(t.params["x"], "b"), rel=1e-6)


def test_plots_of_a_setting_drawn_from_one_choice_are_drawn(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("kind: [b]\n")
    argv = ["--trials", "3", "--space", str(path), "--no-test", "--no-progress"]
    assert tune(*argv, "--out-dir", str(tmp_path)) == 0  # plots on; no warning
    for name in ("optimization_history.png", "param_importances.png", "parallel_coordinate.png"):
        assert (tmp_path / "tune-planted" / name).stat().st_size > 0


def test_user_errors_of_a_study_are_one_line_and_exit_status_2(tmp_path, capsys):
    def refused(argv: list[str], message: str, experiments=ALL) -> None:
        assert main(argv, experiments=experiments) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err

    out = ["--out-dir", str(tmp_path), *QUIET]
    assert tune("--trials", "1", "--name", "s", "--no-test", *out) == 0
    refused(["tune", "seq2seq", "--name", "s", *out], "is a study of 'planted', not 'seq2seq'")
    refused(["tune", "planted", "--name", "s", "--epochs", "2", *out], "train.epochs: 1 -> 2")
    refused(
        ["tune", "planted", "--storage", "postgresql://nobody:secret@127.0.0.1:1/none", *out],
        "cannot open the study's database postgresql://nobody@127.0.0.1:1/none",
    )
    refused(["tune", "planted", "--storage", "nonsense", *out], "cannot open the study's database")
    refused(["tune", "planted", "--trials", "0", *out], "--trials must be at least 1")
    refused(["tune", "planted", "--folds", "1", *out], "--folds must be at least 2")
    refused(["tune", "--report", str(tmp_path)], "not a study folder")
    refused(["tune"], "give an EXPERIMENT to tune, or --report STUDY_DIR")
    refused(["tune", "--report", str(tmp_path / "s"), "planted"], "--report STUDY_DIR stands alone")


def test_every_experiments_declared_search_space_is_valid():
    for experiment in EXPERIMENTS:
        assert experiment.search_space, experiment.name
        base = (experiment.config(), TrainConfig(**experiment.train_defaults))
        space = search_space(experiment.search_space, base, experiment.name)
        assert set(space) == set(experiment.search_space)


def test_a_categorical_over_any_config_field_is_one_entry():
    (mnist,) = [e for e in EXPERIMENTS if e.name == "mnist"]
    space = search_space({"cell": ["rnn", "gru", "lstm"]}, (mnist.config(),), "t")
    assert space["cell"].choices == ("rnn", "gru", "lstm")
    with pytest.raises(ValueError, match="nonlinearity: 'gelu' is not one of tanh, relu"):
        search_space({"nonlinearity": ["tanh", "gelu"]}, (mnist.config(),), "t")


# ---- PostgreSQL: a private server in a temporary folder, on a free port --------------------


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL programs (initdb, pg_ctl), if installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if (Path(folder) / "initdb").is_file():
            return Path(folder)
    return None


def free_port() -> int:
    import socket

    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """postgresql://... of a server started for this test alone (as the `postgres` user when
    the test runs as root, which initdb refuses), stopped and removed at the end."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL is not installed (Debian's postgresql package; .ci/run installs it)"
        )
    user = None
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
    folder = Path(tempfile.mkdtemp(prefix="rnnlab-pg-"))
    if user is not None:
        os.chown(folder, user.pw_uid, user.pw_gid)
    data, port = folder / "data", free_port()
    run_as = {"user": user.pw_uid, "group": user.pw_gid} if user is not None else {}

    def pg(*args: str) -> None:
        # no pipes: the server pg_ctl starts would hold them open, and run() wait forever
        with open(folder / "pg_ctl.log", "ab") as log:
            subprocess.run(args, check=True, stdout=log, stderr=log, cwd=folder, **run_as)

    try:
        pg(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "tune",
            "--auth=trust",
            "--no-locale",
            "-E",
            "UTF8",
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        server_log = str(folder / "server.log")
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", server_log, "-o", options, "-w", "start")
        try:
            yield f"postgresql+psycopg://tune@127.0.0.1:{port}/postgres"
        finally:
            pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def test_two_workers_on_two_machines_share_a_postgresql_study(tmp_path, postgres_url):
    """Two processes, each with its own study folder as on two machines, one storage: the
    budget is run once in all, whichever worker took each trial."""
    argv = ["--trials", "6", "--pause", "0.05", "--epochs", "2", "--storage", postgres_url]
    argv += ["--name", "shared", "--pruner", "none", "--no-test", "--threads", "1"]
    argv += ["--heartbeat", "5"]
    workers = [
        subprocess.Popen(
            planted_command(*argv, "--out-dir", str(tmp_path / machine), *QUIET),
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for machine in ("a", "b")
    ]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    storage = optuna.storages.RDBStorage(postgres_url)
    try:
        trials = optuna.load_study(study_name="shared", storage=storage).trials
    finally:
        storage.engine.dispose()  # the test's connections closed before the server stops
    assert states(trials) == {"COMPLETE": 6}
    runs = sorted(t.user_attrs["run"] for t in trials)
    assert runs == [f"trial-{k}" for k in range(6)]
    folders = sorted(p.name for m in ("a", "b") for p in (tmp_path / m / "shared").glob("trial-*"))
    assert folders == runs  # each trial ran on one machine only
    assert len({t.user_attrs["worker"] for t in trials}) == 2
