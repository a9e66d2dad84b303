"""The results store checks what it reads and is shared safely (bench/run/store.py): manifests,
damage detected (truncated or altered JSON, CSV and model weights), quarantined and recomputed,
legacy stores, --verify-store, and the stage locks (waiting, reuse, stale locks taken over)."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.run import lock as lock_module
from bench.run import manifest as manifest_module
from bench.run import store as store_module
from bench.run.reproducible import pin_cpu_kernels
from bench.run.store import HOST, MANIFEST, Busy, Store, verify_store, write_json
from tables.render import build_view, render_markdown

# torch fixes its CPU kernels at its first operation (this module's weight files): pinned first,
# as run_all.main does, so that the in-process runs of other tests compute what their
# subprocesses do (tests/test_run_all.py compares the two).
pin_cpu_kernels()
ROOT = Path(__file__).resolve().parent.parent
SMOKE = ["--table", "4", "--profile", "smoke"]
SUMMARY = re.compile(r"stages: (\d+) computed by this run \((\S+)\), (\d+) computed by another")


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch):
    """What a process knows about the stores it read (verdicts, damage, locks): empty per test,
    as in a new process, so that no test's damage leaks into another's exit codes."""
    monkeypatch.setattr(manifest_module, "_VERDICTS", {})
    monkeypatch.setattr(store_module, "_DAMAGE", {})
    monkeypatch.setattr(lock_module, "_HELD", set())


def _commit_stage(store: Store, stage_id: str, status: str = "ok") -> Path:
    """A stage with a file of each kind: JSON, CSV, model weights (torch's zip archive)."""
    tmp = store.begin(stage_id)
    write_json(tmp / "status.json", {"status": status, "reason": ""})
    write_json(tmp / "metrics.json", {"test": {"plcc": 0.512345, "srcc": 0.498765}})
    pd.DataFrame({"id": ["a", "b", "c"], "pred": [5.125, 4.75, 6.5]}).to_csv(
        tmp / "predictions.csv", index=False
    )
    torch.save({"weight": torch.arange(256, dtype=torch.float32)}, tmp / "model.pt")
    return store.commit(tmp, stage_id)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _alter(path: Path) -> None:
    """Change one digit (text) or one byte in the middle (binary); the size stays."""
    data = bytearray(path.read_bytes())
    if path.suffix == ".pt":
        data[len(data) // 2] ^= 0x01
    else:
        i = next(i for i in range(len(data) // 2, len(data)) if chr(data[i]).isdigit())
        data[i] = ord(str((int(chr(data[i])) + 1) % 10))
    path.write_bytes(bytes(data))


DAMAGE = [
    (name, how)
    for name in ("metrics.json", "predictions.csv", "model.pt")
    for how in (_truncate, _alter)
]


# Manifests and checks -------------------------------------------------------------------------


def test_commit_writes_the_size_and_sha256_of_every_file(tmp_path):
    stage = _commit_stage(Store(tmp_path), "abc")
    files = json.loads((stage / MANIFEST).read_text())["files"]
    assert set(files) == {"status.json", "metrics.json", "predictions.csv", "model.pt"}
    for name, entry in files.items():
        data = (stage / name).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("name,damage", DAMAGE, ids=[f"{n}-{d.__name__}" for n, d in DAMAGE])
def test_damage_is_reported_in_one_line_and_quarantined(tmp_path, capsys, name, damage):
    store = Store(tmp_path)
    stage = _commit_stage(store, "abc")
    damage(stage / name)
    damaged_bytes = (stage / name).read_bytes()
    status = store.status("abc")
    assert status["status"] == "damaged" and name in status["reason"]
    assert not store.is_ok("abc")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"damaged stage {stage}: {name}")
    (moved,) = (tmp_path / "quarantine").iterdir()  # moved aside whole, never deleted
    assert moved.name.startswith("abc-") and not stage.exists()
    assert (moved / name).read_bytes() == damaged_bytes
    assert name in json.loads((moved / "quarantine.json").read_text())["problem"]
    assert Store(tmp_path).status("abc")["status"] == "damaged"  # this process remembers
    store_module._DAMAGE.clear()  # another process: the stage is simply not stored
    assert Store(tmp_path).status("abc") is None


def test_sizes_are_compared_on_every_read_hashes_once_per_process(tmp_path, monkeypatch):
    store = Store(tmp_path)
    stage = _commit_stage(store, "abc")
    hashed = []
    real = manifest_module.sha256
    monkeypatch.setattr(manifest_module, "sha256", lambda path: hashed.append(path) or real(path))
    assert store.is_ok("abc") and len(hashed) == 4
    assert store.is_ok("abc") and len(hashed) == 4  # the verdict is kept
    _truncate(stage / "predictions.csv")
    assert store.status("abc")["status"] == "damaged" and len(hashed) == 4  # by its size


def test_a_failed_stage_is_checked_like_an_ok_one(tmp_path):
    store = Store(tmp_path)
    stage = _commit_stage(store, "abc", status="failed")
    assert store.status("abc")["status"] == "failed"
    _alter(stage / "metrics.json")
    manifest_module._VERDICTS.clear()
    assert store.status("abc")["status"] == "damaged"


@pytest.mark.parametrize("name", ["status.json", "metrics.json", "predictions.csv", "model.pt"])
def test_a_legacy_stage_without_manifest_gets_parse_checks(tmp_path, name):
    store = Store(tmp_path)
    stage = _commit_stage(store, "abc")
    (stage / MANIFEST).unlink()  # as a stage stored before manifests
    assert store.is_ok("abc")
    _truncate(stage / name)
    manifest_module._VERDICTS.clear()
    status = store.status("abc")
    assert status["status"] == "damaged" and name in status["reason"]


def test_an_altered_byte_of_a_legacy_model_fails_its_zip_crc(tmp_path):
    store = Store(tmp_path)
    stage = _commit_stage(store, "abc")
    (stage / MANIFEST).unlink()
    _alter(stage / "model.pt")
    assert "model.pt" in store.status("abc")["reason"]


def test_verify_store_summarises_and_writes_manifests_for_legacy_stages(tmp_path, capsys):
    store = Store(tmp_path)
    for stage_id in ("intact", "legacy", "broken"):
        _commit_stage(store, stage_id)
    (store.path("legacy") / MANIFEST).unlink()
    _alter(store.path("broken") / "model.pt")
    orphan = tmp_path / "runs" / ".tmp-0123456789abcdef-999999999-deadbeef-elsewhere"
    orphan.mkdir()  # another host's, and no lock names it
    stale = tmp_path / "runs" / ".lock-intact"
    stale.write_text(json.dumps({"host": HOST, "pid": 999999999, "token": "x"}))
    summary, code = verify_store(tmp_path)
    assert code == 3
    for line in (
        "3 stages checked",
        "intact (sizes and SHA-256 match their manifest): 1",
        "no manifest (stored before manifests; parse checks passed): 1",
        "damaged (moved to",
        "quarantined, kept for inspection: 1",
        "orphaned temporary directories removed: 1; stale locks removed: 1",
    ):
        assert line in summary
    assert re.search(r"^  damaged \(moved to .+\): 1$", summary, re.MULTILINE)
    assert not orphan.exists() and not stale.exists()
    assert "damaged stage" in capsys.readouterr().err
    summary, code = verify_store(tmp_path, write_manifests=True)
    assert code == 0 and "manifests written: 1 (skipped: 0)" in summary
    _alter(store.path("legacy") / "metrics.json")  # a changed number that still parses
    summary, code = verify_store(tmp_path)
    assert code == 3 and "intact (sizes and SHA-256 match their manifest): 1" in summary


def test_a_damaged_cell_renders_as_damaged_with_a_note():
    runs = pd.DataFrame(
        [
            {"row": "a", "seed": 0, "status": "damaged", "reason": "model.pt: ..."},
            {"row": "b", "seed": 0, "status": "ok", "reason": "", "plcc": 0.5},
        ]
    )
    for key in ("plcc", "srcc", "mae_l", "mae_m", "mae_h"):
        runs[key] = runs.get(key, float("nan"))
    view = build_view("T", "c", [("a", ["A"]), ("b", ["B"])], ["row"], runs, {})
    markdown = render_markdown(view)
    assert "| A | damaged |" in markdown and "a: 1/1 seeds damaged in the store" in markdown


# Locks ----------------------------------------------------------------------------------------


def test_a_stale_lock_from_a_killed_process_is_taken_over(tmp_path):
    code = (
        "import sys, time\n"
        "from bench.run.store import Store\n"
        f"Store({str(tmp_path)!r})._lock('abc', print)\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    lock = tmp_path / "runs" / ".lock-abc"
    assert json.loads(lock.read_text())["pid"] == holder.pid
    with pytest.raises(Busy):  # alive: not taken over
        Store(tmp_path)._lock("abc", print)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    said = []
    with Store(tmp_path).claim("abc", say=said.append) as claim:
        assert claim.reuse is None  # nothing stored: this process computes it
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert said == [f"took over the lock of abc from {HOST}:{holder.pid} (gone)"]
    assert not lock.exists()  # released


def test_another_hosts_lock_is_stale_once_its_heartbeat_stops(tmp_path):
    store = Store(tmp_path)
    lock = tmp_path / "runs" / ".lock-abc"
    lock.parent.mkdir()
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "t"}))
    with pytest.raises(Busy, match="elsewhere:1"):
        store._lock("abc", print)
    old = time.time() - lock_module.STALE_AFTER_S - 5
    os.utime(lock, (old, old))
    store._lock("abc", print).release()
    assert not lock.exists()


def test_the_owner_touches_its_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "HEARTBEAT_S", 0.05)
    lock = Store(tmp_path)._lock("abc", print)
    os.utime(lock.path, (0, 0))
    deadline = time.time() + 30
    while lock.path.stat().st_mtime == 0 and time.time() < deadline:
        time.sleep(0.05)
    lock.release()
    assert time.time() < deadline, "the heartbeat never touched the lock"


def test_a_waiting_process_reuses_what_the_owner_commits(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "POLL_S", 0.05)
    store = Store(tmp_path)
    owner = store._lock("abc", print)  # another worker computing the stage
    waiting = threading.Event()

    def compute_then_release():
        waiting.wait(60)
        _commit_stage(store, "abc")
        owner.release()

    thread = threading.Thread(target=compute_then_release)
    thread.start()
    said = []
    with store.claim("abc", say=lambda line: said.append(line) or waiting.set()) as claim:
        reuse = claim.reuse
    thread.join()
    assert said == [f"waiting for abc (computed by {HOST}:{os.getpid()})"]
    assert reuse["status"] == "ok" and reuse["reused"] == f"{HOST}:{os.getpid()}"
    with store.claim("abc", force=True) as claim:  # stored before: recomputed when forced
        assert claim.reuse is None


def test_temporaries_of_live_computations_on_other_hosts_are_kept(tmp_path):
    store = Store(tmp_path)
    runs = tmp_path / "runs"
    live = runs / ".tmp-abc-4242-deadbeef-elsewhere"
    gone = runs / ".tmp-def-4242-deadbeef-elsewhere"
    for leftover in (live, gone):
        leftover.mkdir(parents=True)
    (runs / ".lock-abc").write_text(json.dumps({"host": "elsewhere", "pid": 4242}))
    assert store.clean_temporaries() == [gone]
    assert live.exists()


# The command line -----------------------------------------------------------------------------


def _cli(*args: str, results: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run_all.py", *args, "--results", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


@pytest.fixture(scope="module")
def concurrent(tmp_path_factory):
    """Two smoke Table 4 runs started together on one empty store (its embedded benchmark
    generated first, so that both reach their stages at once)."""
    from bench.data.registry import load_dataset
    from bench.profiles import get_profile

    results = tmp_path_factory.mktemp("shared")
    load_dataset("synth-ava", get_profile("smoke"), None, results / "cache", None)
    command = [sys.executable, "run_all.py", *SMOKE, "--jobs", "1", "--results", str(results)]
    procs = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(2)
    ]  # fmt: skip
    outputs = [proc.communicate(timeout=300) for proc in procs]  # (stdout, stderr)
    return results, [(p.returncode, *out) for p, out in zip(procs, outputs, strict=True)]


def test_two_concurrent_runs_compute_each_stage_once(concurrent):
    results, runs = concurrent
    assert [code for code, _, _ in runs] == [0, 0], runs[0][2][-2000:] + runs[1][2][-2000:]
    assert _rows(runs[0][1]) == _rows(runs[1][1]) and len(_rows(runs[0][1])) == 9
    firsts = [(d / "log.txt").read_text().splitlines()[0] for d in _stage_dirs(results)]
    assert len(firsts) == 8
    computed = reused = 0
    for _, _, err in runs:
        here, runner, others = SUMMARY.search(err).groups()
        # the stages whose log names this run as the one that computed them
        assert sum(line.endswith(f" for the run {runner}") for line in firsts) == int(here)
        computed, reused = computed + int(here), reused + int(others)
    assert (computed, reused) == (8, 8)  # each stage once; the other run took it from the store
    for line in re.findall(r"waiting for \w+ \(computed by [^)]+\)", runs[0][2] + runs[1][2]):
        assert f"{HOST}:" in line  # said with the owner's host:pid


def _stage_dirs(results: Path) -> list[Path]:
    return sorted(d for d in (results / "runs").iterdir() if not d.name.startswith("."))


def test_damaged_stages_are_quarantined_and_recomputed(concurrent, tmp_path):
    shared, runs = concurrent
    results = tmp_path / "store"
    shutil.copytree(shared, results)
    table = _rows(runs[0][1])
    stages = _stage_dirs(results)
    truncated = {stages[0]: "metrics.json", stages[1]: "predictions.csv", stages[2]: "model.pt"}
    (stages[0] / "metrics.json").write_text('{"plcc": 0.5, ')  # as measured in the issue
    _truncate(stages[1] / "predictions.csv")
    _truncate(stages[2] / "model.pt")

    cached = _cli(*SMOKE, "--cached-only", results=results)
    assert cached.returncode == 3 and "Traceback" not in cached.stderr
    for stage, name in truncated.items():
        (line,) = [x for x in cached.stderr.splitlines() if x.startswith(f"damaged stage {stage}")]
        assert f": {name}: " in line and "moved to" in line
    rendered = _rows(cached.stdout)
    assert sum("| damaged |" in row for row in rendered) == 3
    plain = {row.replace("**", "") for row in table}  # the bold moves with the damaged rows
    assert {row.replace("**", "") for row in rendered if "damaged" not in row} <= plain
    assert len(list((results / "quarantine").iterdir())) == 3

    altered = {stages[3]: "metrics.json", stages[4]: "predictions.csv", stages[5]: "model.pt"}
    for stage, name in altered.items():
        _alter(stage / name)
    again = _cli(*SMOKE, "--jobs", "1", results=results)
    assert again.returncode == 3, again.stderr[-2000:]  # it found damage
    for stage, name in altered.items():
        assert f"damaged stage {stage}: {name}: content differs" in again.stderr
    assert SUMMARY.search(again.stderr).group(1) == "6"  # 3 quarantined before, 3 now
    assert _rows(again.stdout) == table  # recomputed, digit for digit
    assert len(list((results / "quarantine").iterdir())) == 6

    verified = _cli("--verify-store", results=results)
    assert verified.returncode == 0, verified.stdout
    assert "intact (sizes and SHA-256 match their manifest): 8" in verified.stdout


def test_a_store_made_before_manifests_is_kept_and_checked(concurrent, tmp_path):
    shared, runs = concurrent
    results = tmp_path / "store"
    shutil.copytree(shared, results)
    for stage in _stage_dirs(results):
        (stage / MANIFEST).unlink()
    rerun = _cli(*SMOKE, "--cached-only", results=results)
    assert rerun.returncode == 0 and _rows(rerun.stdout) == _rows(runs[0][1])
    broken = _stage_dirs(results)[0]
    (broken / "metrics.json").write_text('{"plcc": 0.5, ')
    cached = _cli(*SMOKE, "--cached-only", results=results)
    assert cached.returncode == 3 and "Traceback" not in cached.stderr
    assert f"damaged stage {broken}: metrics.json: not valid JSON" in cached.stderr
    assert sum("| damaged |" in row for row in _rows(cached.stdout)) == 1
    verified = _cli("--verify-store", "--write-manifests", results=results)
    assert verified.returncode == 0
    assert "manifests written: 7 (skipped: 0)" in verified.stdout
    assert all((stage / MANIFEST).exists() for stage in _stage_dirs(results))
