"""The results store: one directory per stage under results/runs/<stage id>/, written atomically.

A stage is built in a temporary sibling directory and renamed into place only once complete, so
a kill (Ctrl-C, kill -9, power loss) never leaves a half-written stage that looks finished.
Each stage directory holds config.json, status.json, versions.json, log.txt and, when it
succeeded, metrics.json, curve.csv, predictions.csv, model.pt (and for self-training the APDS
grid and the pseudo-labels). Tables and figures read only this store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

RUNS = "runs"


def code_version() -> str:
    """`git describe` of this checkout (with -dirty), or the package version outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=8"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("elta-bench")
    except PackageNotFoundError:
        return "unknown"


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, stage_id: str) -> Path:
        return self.root / RUNS / stage_id

    def status(self, stage_id: str) -> dict | None:
        """The stored status ({'status': 'ok'|'failed', 'reason': ...}), or None if absent."""
        try:
            return read_json(self.path(stage_id) / "status.json")
        except (OSError, ValueError):
            return None

    def is_ok(self, stage_id: str) -> bool:
        status = self.status(stage_id)
        return status is not None and status.get("status") == "ok"

    def metrics(self, stage_id: str) -> dict:
        return read_json(self.path(stage_id) / "metrics.json")

    def begin(self, stage_id: str) -> Path:
        """A fresh temporary directory to build a stage in."""
        tmp = self.root / RUNS / f".tmp-{stage_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, tmp: Path, stage_id: str) -> Path:
        """Move a finished temporary directory into place, replacing an older result."""
        final = self.path(stage_id)
        old = None
        if final.exists():
            old = final.with_name(f".old-{stage_id}-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process stored the same stage
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def clean_temporaries(self) -> None:
        """Remove what killed processes left behind: temporary directories whose process is
        gone (never a committed stage, never the work of a live process)."""
        for leftover in (self.root / RUNS).glob(".tmp-*"):
            pid = int(leftover.name.split("-")[2])
            if not _alive(pid):
                shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
