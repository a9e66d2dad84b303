"""The results store: one directory per stage under results/runs/<stage id>/, written atomically,
checked when read, and computed once however many processes share it.

Commit. A stage is built in a temporary sibling directory (`.tmp-<id>-<pid>-<random>-<host>`);
`commit` writes its `manifest.json` (every file's size and SHA-256) and renames it into place,
so a kill (Ctrl-C, kill -9, power loss) never leaves a half-written stage that looks finished.
The manifest is not part of the stage's config: a stage's id does not change.

Check. Every read of a stage (`status`) compares each file's size with the manifest; the first
read in a process also hashes every file (the verdict is kept in memory for that process, for
as long as the manifest file is the same). A stage stored before manifests existed ("legacy")
is checked by parsing: its JSON files parse, its CSV files end with a newline, its .pt files
are zip archives whose CRCs match; `verify_store(..., write_manifests=True)` gives it one.

Quarantine. A stage that fails its check is reported in one line naming its directory and the
problem, and moved, untouched, to results/quarantine/<id>-<time>-<random>/ (with a
quarantine.json saying why); it is never deleted. It then counts as not stored; the process
remembers it, so that a cell of it reads "damaged" (`damage_found` for the exit code).

Locks. A stage is computed (and replaced, and quarantined) only by the process holding
runs/.lock-<id>, made by an exclusive create (a hard link of a file already written, so that no
other process ever reads it empty) and holding the owner's host, pid, start time and a random
token. Its owner touches it every HEARTBEAT_S seconds. Another
process waits for it (polling every POLL_S seconds) and then reuses what the owner committed.
A lock is stale, and taken over, when its owner ran on this host and is gone, or when it has
not been touched for STALE_AFTER_S seconds (an owner on another host, or a reused pid); one
process at a time takes a stale lock over (runs/.lock-<id>.takeover, also exclusive).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.run.lock import (
    HOST,
    POLL_S,
    Busy,
    Lock,
    alive,
    holds,
    owner_name,
    read_owner,
    stale,
    take_over,
)
from bench.run.manifest import (
    MANIFEST,
    STATUSES,
    Damaged,
    checked_status,
    forget,
    read_json,
    read_problem,
    stage_stamp,
    write_json,
    write_manifest,
)
from iaa_common import UserError

RUNS = "runs"
QUARANTINE = "quarantine"
EXIT_DAMAGED = 3  # the exit code of a command that found damaged stages

# The damage this process found or was told of (absolute stage directory -> problem).
_DAMAGE: dict[str, str] = {}


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


def damage_found() -> dict[str, str]:
    """Stage directory -> problem, for every damaged stage this process found or was told of."""
    return dict(_DAMAGE)


def note_damage(found: dict[str, str]) -> None:
    """Add damage another process found (a worker's, returned with its outcome)."""
    _DAMAGE.update(found)


@dataclass(frozen=True)
class Claim:
    """A held lock on a stage; `reuse`: its stored status when it is not to be computed (stored
    ok and not forced, or committed by `reuse["reused"]` while this process waited)."""

    reuse: dict | None


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, stage_id: str) -> Path:
        return self.root / RUNS / stage_id

    def status(self, stage_id: str) -> dict | None:
        """The stored status ({'status': 'ok'|'failed', 'reason': ...}) of an intact stage; for
        a damaged one {'status': 'damaged', 'reason': ...} (it is moved to quarantine); None
        if absent."""
        stage_dir = self.path(stage_id)
        if not stage_dir.is_dir():
            reason = _DAMAGE.get(os.path.abspath(stage_dir))
            return None if reason is None else {"status": "damaged", "reason": reason}
        try:
            return checked_status(stage_dir)
        except (Damaged, OSError) as err:
            return self._set_aside(stage_id, read_problem(err))

    def is_ok(self, stage_id: str) -> bool:
        status = self.status(stage_id)
        return status is not None and status.get("status") == "ok"

    def metrics(self, stage_id: str) -> dict:
        return read_json(self.path(stage_id) / "metrics.json")

    def report_damage(self, stage_id: str, problem: str) -> dict:
        """A stage that passed its check but cannot be read (changed meanwhile): say so once and
        remember it; the next check moves it aside. Its status for a record."""
        return {"status": "damaged", "reason": _remember(self.path(stage_id), problem)}

    def begin(self, stage_id: str) -> Path:
        """A fresh temporary directory to build a stage in."""
        name = f".tmp-{stage_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}-{HOST}"
        tmp = self.root / RUNS / name
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, tmp: Path, stage_id: str) -> Path:
        """Write the manifest of a finished temporary directory and move it into place,
        replacing an older result (the caller holds the stage's lock: see `claim`)."""
        write_manifest(tmp)
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

    def clean_temporaries(self) -> list[Path]:
        """Remove what killed processes left behind: temporary directories whose process is gone
        (this host) or whose stage lock does not name it (another host), and the older copies
        of an interrupted replacement. Never a committed stage, never the work of a live
        process. The removed paths."""
        removed = []
        for leftover in (self.root / RUNS).glob(".tmp-*"):
            parts = leftover.name.split("-", 4)  # .tmp, id, pid, random[, host]
            if len(parts) < 4 or not parts[2].isdigit():
                continue  # not a name this module makes
            if self._orphaned(parts[1], int(parts[2]), parts[4] if len(parts) == 5 else HOST):
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover)
        for leftover in (self.root / RUNS).glob(".old-*"):
            if self._lock_owner(leftover.name.split("-")[1]) is None:
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover)
        return removed

    def _orphaned(self, stage_id: str, pid: int, host: str) -> bool:
        if host == HOST and alive(pid):
            return False
        return self._lock_owner(stage_id) != f"{host}:{pid}"

    # Locks ------------------------------------------------------------------------------------

    def _lock_path(self, stage_id: str) -> Path:
        return self.root / RUNS / f".lock-{stage_id}"

    def _lock_owner(self, stage_id: str) -> str | None:
        """host:pid of the live owner of a stage's lock, or None (no lock, or a stale one)."""
        path = self._lock_path(stage_id)
        owner = read_owner(path)
        if not path.exists() or stale(path, owner):
            return None
        return owner_name(owner)

    @contextmanager
    def claim(
        self, stage_id: str, force: bool = False, say: Callable[[str], None] | None = None
    ) -> Iterator[Claim]:
        """Hold the stage's lock for the block, waiting while another live process holds it;
        `say` reports the wait. The Claim tells whether the stage is to be reused."""
        say = say or _to_stderr
        stage_dir, waited_for, before = self.path(stage_id), None, None
        while True:
            try:
                lock = self._lock(stage_id, say)
                break
            except Busy as busy:
                if waited_for is None:
                    before = stage_stamp(stage_dir)
                    say(f"waiting for {stage_id} (computed by {busy.owner})")
                waited_for = busy.owner
                time.sleep(POLL_S)
        try:
            status = self.status(stage_id)
            fresh = waited_for is not None and stage_stamp(stage_dir) != before
            reuse = None
            if status is not None and status["status"] in STATUSES:
                if fresh:
                    reuse = {**status, "reused": waited_for}
                elif status["status"] == "ok" and not force:
                    reuse = {**status, "reused": "another run"}
            yield Claim(reuse)
        finally:
            lock.release()

    def _lock(self, stage_id: str, say: Callable[[str], None]) -> Lock:
        """Take the stage's lock (taking a stale one over), or raise Busy."""
        path = self._lock_path(stage_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            token = uuid.uuid4().hex
            mine = {"host": HOST, "pid": os.getpid(), "started": time.time(), "token": token}
            draft = path.with_name(f"{path.name}.{token}")
            draft.write_text(json.dumps(mine))
            try:  # an exclusive create that is never seen empty: a hard link of the whole file
                os.link(draft, path)
            except FileExistsError:
                owner = read_owner(path)
                if not stale(path, owner):
                    raise Busy(owner_name(owner)) from None
                if take_over(path, owner):
                    say(f"took over the lock of {stage_id} from {owner_name(owner)} (gone)")
                continue
            finally:
                draft.unlink(missing_ok=True)
            return Lock(path, token)
        raise Busy(owner_name(read_owner(path)))

    # Quarantine -------------------------------------------------------------------------------

    def _set_aside(self, stage_id: str, problem: str) -> dict:
        """Move a damaged stage to quarantine under its lock; the status to report for it (its
        own if it was replaced by an intact copy meanwhile)."""
        held = holds(self._lock_path(stage_id))
        try:
            lock = None if held else self._lock(stage_id, _to_stderr)
        except Busy as busy:
            where = f"left in place: {busy.owner} holds its lock"
        except OSError as err:
            where = f"left in place: cannot lock it ({err.strerror or err})"
        else:
            try:
                intact, where = self._move_aside(stage_id, problem)
                if intact is not None:
                    return intact
            except OSError as err:
                where = f"could not move it aside ({err.strerror or err})"
            finally:
                if lock is not None:
                    lock.release()
        reason = _remember(self.path(stage_id), f"{problem}; {where}")
        return {"status": "damaged", "reason": reason}

    def _move_aside(self, stage_id: str, problem: str) -> tuple[dict | None, str]:
        """Under the stage's lock: (its status, "") if it is intact now; else (None, where it
        went): quarantine/<id>-<time>-<random>/, with a quarantine.json saying why."""
        stage_dir = self.path(stage_id)
        if not stage_dir.is_dir():
            return None, "moved aside by another process"
        try:
            return checked_status(stage_dir), ""
        except (Damaged, OSError):
            pass
        stamp = time.strftime("%Y%m%dT%H%M%S")
        dest = self.root / QUARANTINE / f"{stage_id}-{stamp}-{uuid.uuid4().hex[:6]}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(stage_dir, dest)
        forget(stage_dir)
        by = f"{HOST}:{os.getpid()}"
        write_json(dest / "quarantine.json", {"stage": stage_id, "problem": problem, "by": by})
        return None, f"moved to {dest}"

    def seal(self, stage_id: str) -> bool:
        """Give a stage stored before manifests, if it passes its parse checks, a manifest of
        its files as they are now (under its lock); False if busy or no longer intact."""
        try:
            lock = self._lock(stage_id, _to_stderr)
        except Busy:
            return False
        try:
            stage_dir = self.path(stage_id)
            if not (stage_dir / MANIFEST).exists():
                checked_status(stage_dir, rehash=True)
                write_manifest(stage_dir)
            return True
        except (Damaged, OSError):
            return False
        finally:
            lock.release()


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _remember(stage_dir: Path, reason: str) -> str:
    """Say once per process that a stage is damaged, and remember it."""
    key = os.path.abspath(stage_dir)
    if _DAMAGE.get(key) != reason:
        _to_stderr(f"damaged stage {stage_dir}: {reason}")
    _DAMAGE[key] = reason
    return reason


# --verify-store -------------------------------------------------------------------------------


def verify_store(root: Path, write_manifests: bool = False) -> tuple[str, int]:
    """Check every stage of a store (each file's size and SHA-256, or a legacy stage's parse
    checks), moving the damaged ones to quarantine; remove orphaned temporary directories and
    stale locks. The summary, and the exit code: 0 when no stage is damaged, else
    EXIT_DAMAGED."""
    store = Store(root)
    runs = store.root / RUNS
    if not store.root.is_dir():
        raise UserError(f"{root}: no results store here")
    counts = dict.fromkeys(("intact", "legacy", "sealed", "skipped", "damaged"), 0)
    for stage_dir in sorted(p for p in runs.glob("[!.]*") if p.is_dir()):
        legacy = not (stage_dir / MANIFEST).exists()
        forget(stage_dir)  # hash whatever this process saw
        status = store.status(stage_dir.name)
        if status is None:
            continue  # moved by another process meanwhile
        if status["status"] == "damaged":
            counts["damaged"] += 1
        elif legacy and write_manifests:
            counts["sealed" if store.seal(stage_dir.name) else "skipped"] += 1
        else:
            counts["legacy" if legacy else "intact"] += 1
    orphans = store.clean_temporaries()
    stale_locks = 0
    for lock in runs.glob(".lock-*"):
        owner = read_owner(lock)
        if not lock.name.endswith(".takeover") and stale(lock, owner):
            stale_locks += take_over(lock, owner)
    quarantine = store.root / QUARANTINE
    lines = [
        f"{runs}: {sum(counts.values())} stages checked",
        f"  intact (sizes and SHA-256 match their manifest): {counts['intact']}",
        f"  no manifest (stored before manifests; parse checks passed): {counts['legacy']}",
        f"  damaged (moved to {quarantine}): {counts['damaged']}",
        f"  quarantined, kept for inspection: {len(list(quarantine.glob('*')))}",
        f"  orphaned temporary directories removed: {len(orphans)}; "
        f"stale locks removed: {stale_locks}",
    ]
    if write_manifests:
        lines.insert(3, f"  manifests written: {counts['sealed']} (skipped: {counts['skipped']})")
    elif counts["legacy"]:
        lines.append("  --write-manifests gives the stages without one a manifest")
    return "\n".join(lines), EXIT_DAMAGED if counts["damaged"] else 0
