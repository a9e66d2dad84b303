"""The command line end to end on the smoke profile: Table 4, caching, failures, bad input."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import run_all
from bench.run.store import Store

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["--table", "4", "--profile", "smoke"]


def _cli(*args: str, results: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run_all.py", *args, "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    results = tmp_path_factory.mktemp("smoke")
    return results, _cli(*SMOKE, "--jobs", "2", results=results)  # fanned out by joblib


def test_smoke_table4_prints_and_writes_all_eight_rows(smoke_results):
    results, proc = smoke_results
    assert proc.returncode == 0, proc.stderr[-2000:]
    markdown = (results / "tables" / "table4.md").read_text()
    assert markdown in proc.stdout  # printed when the run finishes
    body = [line for line in markdown.splitlines() if line.startswith("| ") and "✓" in line]
    assert len(body) == 7  # 8 rows, the baseline has no check mark
    assert "0.743" in markdown and "0.438" in markdown  # the paper's Base. P and ELTA L
    assert "failed" not in markdown
    tex = (results / "tables" / "table4.tex").read_text()
    assert r"\toprule" in tex and "synth-ava" in tex
    per_seed = pd.read_csv(results / "tables" / "table4.csv")  # the per-seed records
    assert len(per_seed) == 8 and (per_seed["status"] == "ok").all()
    assert per_seed[["plcc", "srcc", "mae_l", "mae_m", "mae_h", "val_srcc"]].notna().all().all()


def test_claims_read_the_stored_seeds_from_the_store(smoke_results, capsys):
    from tables import claims

    results, _ = smoke_results
    assert claims.main(["--results", str(results), "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("| FLSA improves all metrics"))
    assert "flsa vs base, 1 paired seed" in line and line.endswith(f"| {claims.NO_TEST} |")
    assert "| ELTA has the best P and S" in out and "not run" in out  # Table 1: not run here


def test_table4_trains_round1_once_per_tfa_flsa_setting(smoke_results):
    results, _ = smoke_results
    kinds = [json.loads((d / "config.json").read_text())["stage"] for d in _stage_dirs(results)]
    assert sorted(kinds) == ["round1"] * 4 + ["selftrain"] * 4


def test_rerun_reuses_every_stage(smoke_results):
    results, _ = smoke_results
    dry = _cli(*SMOKE, "--dry-run", results=results)
    assert "8 stages: 8 cached, 0 to run" in dry.stdout
    before = {d.name: (d / "status.json").stat().st_mtime for d in _stage_dirs(results)}
    again = _cli(*SMOKE, results=results)
    assert again.returncode == 0
    after = {d.name: (d / "status.json").stat().st_mtime for d in _stage_dirs(results)}
    assert before == after


def test_seeds_multiply_the_runs_but_not_the_sharing(tmp_path):
    dry = _cli(*SMOKE, "--seeds", "3", "--dry-run", results=tmp_path)
    assert dry.returncode == 0
    assert "24 stages: 0 cached, 24 to run" in dry.stdout
    assert "synth-ava/tfa+flsa/seed2, synth-ava/tfa+flsa+apds/seed2" in dry.stdout


def test_each_stage_stores_its_record(smoke_results):
    results, _ = smoke_results
    for stage in _stage_dirs(results):
        names = {p.name for p in stage.iterdir()}
        assert {"config.json", "status.json", "metrics.json", "log.txt", "curve.csv"} <= names
        assert {"predictions.csv", "versions.json", "model.pt"} <= names
        if json.loads((stage / "config.json").read_text())["stage"] == "selftrain":
            assert {"apds_grid.csv", "pseudo_labels.csv"} <= names
            apds = json.loads((stage / "metrics.json").read_text())["apds"]
            assert 0 < apds["n_pseudo"] <= 96  # never more than the training set


def _stage_dirs(results: Path) -> list[Path]:
    return [d for d in (results / "runs").iterdir() if not d.name.startswith(".")]


def test_nan_run_is_recorded_as_failed_and_the_others_finish(
    tmp_path, monkeypatch, capsys, smoke_results
):
    import torch

    from bench.train import loop as train

    real_loss = train.training_loss

    def nan_when_flsa(*args):
        loss = real_loss(*args)
        opts = args[4]
        return loss * torch.nan if opts.flsa_weight > 0 else loss

    monkeypatch.setattr(train, "training_loss", nan_when_flsa)
    code = run_all.main([*SMOKE, "--jobs", "1", "--results", str(tmp_path)])  # in this process
    out = capsys.readouterr().out
    assert code == 1
    rows = [line for line in out.splitlines() if line.startswith("| ")][2:]
    failed = [r for r in rows if "failed" in r]
    assert len(failed) == 4  # every row with FLSA
    assert all("nan" not in r.lower() for r in rows if r not in failed)
    assert "Diverged" in out and "NaN" in out.replace("nan", "NaN")
    ok = [d for d in _stage_dirs(tmp_path) if Store(tmp_path).is_ok(d.name)]
    assert len(ok) == 4
    # The rows without FLSA ran sequentially here and in parallel (--jobs 2) in the fixture:
    # one thread per stage makes their results identical.
    fixture = Store(smoke_results[0])
    for stage in ok:
        assert Store(tmp_path).metrics(stage.name) == fixture.metrics(stage.name)


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (Linux /proc; none elsewhere)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # the process ended meanwhile
            continue
        if parent == pid:
            child = int(stat.parent.name)
            found |= {child} | _descendants(child)
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited


def _first_completed_stage(runs: Path, proc: subprocess.Popen) -> list[Path]:
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        done = [d for d in runs.glob("*") if not d.name.startswith(".")] if runs.exists() else []
        if done:
            return done
        time.sleep(0.2)
    return []


def test_kill_mid_grid_loses_no_completed_stage(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "run_all.py", *SMOKE, "--jobs", "1", "--results", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = tmp_path / "runs"
    done = _first_completed_stage(runs, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert done, "no stage completed in time"
    store = Store(tmp_path)
    completed = [d.name for d in done if store.is_ok(d.name)]
    assert completed
    resumed = _cli(*SMOKE, "--dry-run", results=tmp_path)
    counts = next(line for line in resumed.stdout.splitlines() if " stages: " in line)
    n_cached = int(counts.split()[2])
    assert n_cached >= len(completed)
    finish = _cli(*SMOKE, results=tmp_path)
    assert finish.returncode == 0, finish.stderr[-2000:]
    assert not list(runs.glob(".tmp-*"))  # the killed run's leftovers are cleaned


def test_killing_the_runner_alone_leaves_no_process_behind(tmp_path):
    """kill -9 of the parent only (not its process group), while its workers compute: every
    worker, the progress queue's manager and the resource trackers exit within seconds, and
    each stage in the store is whole (a stage being computed is absent). 20 seeds, so that the
    grid is still running 1.5 s after its first stage on a fast CPU (one seed's 8 smoke stages
    take about 1.5 s there)."""
    args = [*SMOKE, "--seeds", "20", "--jobs", "2", "--results", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "run_all.py", *args],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert _first_completed_stage(tmp_path / "runs", proc), "no stage completed in time"
    time.sleep(1.5)  # the workers are on their next stages
    tree = _descendants(proc.pid)
    assert len(tree) >= 3  # two workers and their helpers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 8
    while time.time() < deadline and any(_running(pid) for pid in tree):
        time.sleep(0.2)
    assert not [pid for pid in tree if _running(pid)], "processes outlived the killed runner"
    store = Store(tmp_path)
    for stage in _stage_dirs(tmp_path):
        assert store.is_ok(stage.name)
        assert {"config.json", "metrics.json", "model.pt"} <= {p.name for p in stage.iterdir()}


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--table", "9"], "unknown table '9'; valid tables: 1, 2, 3, 4, 5, sampling"),
        (["--table", "4", "--profile", "huge"], "valid profiles: smoke, cpu, paper"),
        (["--table", "4", "--dataset", "imagenet"], "valid datasets: synth-ava"),
        (["--table", "4", "--tau1", "0"], "tau1=0"),
        (["--table", "4", "--tau2", "-1"], "tau2=-1"),
        (["--table", "4", "--flsa-weight", "-0.5"], "--flsa-weight must be >= 0"),
        (["--table", "4", "--tfa-pairs", "0"], "--tfa-pairs must be >= 1"),
        (["--table", "4", "--seeds", "0"], "--seeds must be >= 1"),
        (["--table", "4", "--data-root", "/nonexistent/iaa"], "/nonexistent/iaa"),
        (["--table", "4", "--dataset", "ava"], "needs --data-root"),
        (["--table", "4", "--weights", "swinv2=/no/such.pth"], "/no/such.pth"),
        (["--table", "4", "--weights", "vgg=/x.pth"], "unknown model 'vgg'"),
        (["--table", "4", "--profile", "smoke", "--device", "gpu0"], "--device gpu0: not a device"),
        (["--table", "4", "--profile", "smoke", "--backend", "dask2"], "unknown --backend 'dask2'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, needle, tmp_path, capsys):
    assert run_all.main([*args, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="Ray is installed")
def test_ray_backend_without_ray_is_a_user_error(tmp_path, capsys):
    assert run_all.main([*SMOKE, "--backend", "ray", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[ray]'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_a_local_ray_cluster_gives_the_same_table_as_loky(smoke_results, tmp_path):
    """--backend ray on a local cluster (loopback, 2 CPUs, no dashboard): the smoke Table 4,
    digit for digit the one the loky fixture computed."""
    loky_results, _ = smoke_results
    proc = _cli(*SMOKE, "--backend", "ray", "--jobs", "2", results=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [
        [line for line in (results / "tables" / "table4.md").read_text().splitlines()
         if line.startswith("| ")]
        for results in (loky_results, tmp_path)
    ]  # fmt: skip
    assert len(rows[0]) == 9 and rows[0] == rows[1]  # the header and 8 rows
    for stage in _stage_dirs(tmp_path):  # per-stage logs, as with loky
        assert "best epoch" in (stage / "log.txt").read_text()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_a_store_ray_workers_cannot_write_is_a_user_error(tmp_path):
    import ray

    from bench.run import ray_cluster
    from iaa_common import UserError

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    started = ray_cluster.connect(1)
    try:
        with pytest.raises(UserError, match="a worker cannot write to the results store"):
            ray_cluster.check_store(not_a_folder)
        ray_cluster.check_store(tmp_path)  # a folder it can write: no error
    finally:
        if started:
            ray.shutdown()


def test_results_that_are_not_a_folder_is_a_one_line_error(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    proc = _cli(*SMOKE, results=not_a_folder)
    assert proc.returncode == 2 and "not a folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_malformed_option_is_one_line_and_exit_code_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_all.main(["--table", "4", "--tau1", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid float value" in err and len(err.strip().splitlines()) == 1


def test_bad_data_root_file_error_from_the_command_line(tmp_path):
    (tmp_path / "AADB" / "imgListFiles_label").mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "run_all.py", "--table", "4", "--dataset", "aadb", "--profile", "smoke",
         "--data-root", str(tmp_path), "--results", str(tmp_path / "r")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "imgListTrainRegression_score.txt" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_list_names_everything(capsys):
    assert run_all.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("swinv2", "synth-ava", "tad66k", "smoke", "paper", "Table 4"):
        assert name in out


def test_planning_and_rendering_never_load_torch(smoke_results):
    results, _ = smoke_results
    code = (
        "import sys, run_all\n"
        f"assert run_all.main({SMOKE + ['--results', str(results)]!r}) == 0\n"
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
