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

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from iaa_common import UserError

RUNS = "runs"
QUARANTINE = "quarantine"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
STATUSES = ("ok", "failed")  # what a stage's status.json may say
POLL_S = 2.0  # a waiting process looks at a busy lock this often
HEARTBEAT_S = 10.0  # a lock's owner touches it this often
STALE_AFTER_S = 120.0  # a lock not touched for this long is taken over (mind clock skew)
HOST = socket.gethostname()
EXIT_DAMAGED = 3  # the exit code of a command that found damaged stages

# What this process knows (absolute stage directory -> ...): the hash verdict of each stage it
# checked, keyed by its manifest's stat stamp (None: intact, else the problem); the damage it
# found; the locks it holds.
_VERDICTS: dict[str, tuple[tuple, str | None]] = {}
_DAMAGE: dict[str, str] = {}
_HELD: set[str] = set()


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


def damage_found() -> dict[str, str]:
    """Stage directory -> problem, for every damaged stage this process found or was told of."""
    return dict(_DAMAGE)


def note_damage(found: dict[str, str]) -> None:
    """Add damage another process found (a worker's, returned with its outcome)."""
    _DAMAGE.update(found)


class Damaged(Exception):
    """A stage failed its check; the message is the problem (naming the file)."""


class Busy(Exception):
    """A stage's lock is held by a live process (`owner`: host:pid)."""

    def __init__(self, owner: str):
        super().__init__(owner)
        self.owner = owner


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
            return _checked_status(stage_dir)
        except (Damaged, OSError) as err:
            return self._set_aside(stage_id, _problem(err))

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
        if host == HOST and _alive(pid):
            return False
        return self._lock_owner(stage_id) != f"{host}:{pid}"

    # Locks ------------------------------------------------------------------------------------

    def _lock_path(self, stage_id: str) -> Path:
        return self.root / RUNS / f".lock-{stage_id}"

    def _lock_owner(self, stage_id: str) -> str | None:
        """host:pid of the live owner of a stage's lock, or None (no lock, or a stale one)."""
        path = self._lock_path(stage_id)
        owner = _read_owner(path)
        if not path.exists() or _stale(path, owner):
            return None
        return _owner_name(owner)

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
                    before = _stamp(stage_dir)
                    say(f"waiting for {stage_id} (computed by {busy.owner})")
                waited_for = busy.owner
                time.sleep(POLL_S)
        try:
            status = self.status(stage_id)
            fresh = waited_for is not None and _stamp(stage_dir) != before
            reuse = None
            if status is not None and status["status"] in STATUSES:
                if fresh:
                    reuse = {**status, "reused": waited_for}
                elif status["status"] == "ok" and not force:
                    reuse = {**status, "reused": "another run"}
            yield Claim(reuse)
        finally:
            lock.release()

    def _lock(self, stage_id: str, say: Callable[[str], None]) -> _Lock:
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
                owner = _read_owner(path)
                if not _stale(path, owner):
                    raise Busy(_owner_name(owner)) from None
                if _take_over(path, owner):
                    say(f"took over the lock of {stage_id} from {_owner_name(owner)} (gone)")
                continue
            finally:
                draft.unlink(missing_ok=True)
            return _Lock(path, token)
        raise Busy(_owner_name(_read_owner(path)))

    # Quarantine -------------------------------------------------------------------------------

    def _set_aside(self, stage_id: str, problem: str) -> dict:
        """Move a damaged stage to quarantine under its lock; the status to report for it (its
        own if it was replaced by an intact copy meanwhile)."""
        held = os.path.abspath(self._lock_path(stage_id)) in _HELD
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
            return _checked_status(stage_dir), ""
        except (Damaged, OSError):
            pass
        stamp = time.strftime("%Y%m%dT%H%M%S")
        dest = self.root / QUARANTINE / f"{stage_id}-{stamp}-{uuid.uuid4().hex[:6]}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(stage_dir, dest)
        _VERDICTS.pop(os.path.abspath(stage_dir), None)
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
                _checked_status(stage_dir, rehash=True)
                write_manifest(stage_dir)
            return True
        except (Damaged, OSError):
            return False
        finally:
            lock.release()


class _Lock:
    """A lock file this process created; a thread touches it until `release`."""

    def __init__(self, path: Path, token: str):
        self.path, self.token = path, token
        self._stop = threading.Event()
        _HELD.add(os.path.abspath(path))
        threading.Thread(target=self._beat, daemon=True).start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        self._stop.set()
        _HELD.discard(os.path.abspath(self.path))
        if _read_owner(self.path).get("token") == self.token:  # not if taken over meanwhile
            self.path.unlink(missing_ok=True)


def _read_owner(path: Path) -> dict:
    """A lock's content; {} when absent or still being written."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _owner_name(owner: dict) -> str:
    return f"{owner.get('host', '?')}:{owner.get('pid', '?')}"


def _stale(path: Path, owner: dict) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False  # released meanwhile
    if age > STALE_AFTER_S:
        return True
    pid = owner.get("pid")
    return owner.get("host") == HOST and isinstance(pid, int) and not _alive(pid)


def _take_over(path: Path, seen: dict) -> bool:
    """Remove a stale lock if it is still the one seen, one process at a time."""
    guard = path.with_name(path.name + ".takeover")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        if _stale(guard, {}):  # its taker died within the few lines below
            guard.unlink(missing_ok=True)
        return False
    try:
        if _read_owner(path) == seen:
            path.unlink(missing_ok=True)
            return True
        return False
    finally:
        os.close(fd)
        guard.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# Manifests and checks -------------------------------------------------------------------------


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(stage_dir: Path) -> list[str]:
    return sorted(
        p.relative_to(stage_dir).as_posix()
        for p in stage_dir.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )


def write_manifest(stage_dir: Path) -> None:
    """manifest.json: the size and SHA-256 of every file of the stage directory."""
    files = {
        name: {"size": (stage_dir / name).stat().st_size, "sha256": sha256(stage_dir / name)}
        for name in _files(stage_dir)
    }
    tmp = stage_dir / f".{MANIFEST}.tmp"
    write_json(tmp, {"format": MANIFEST_FORMAT, "files": files})
    os.replace(tmp, stage_dir / MANIFEST)


def _stamp(stage_dir: Path) -> tuple | None:
    """Which copy of a stage this is: its manifest's (else status.json's) stat fields."""
    for name in (MANIFEST, "status.json"):
        try:
            st = (stage_dir / name).stat()
        except OSError:
            continue
        return name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
    return None


def _checked_status(stage_dir: Path, rehash: bool = False) -> dict:
    """The parsed status.json of a stage that passes its check; raises Damaged. Sizes are
    compared on every call, hashes (or a legacy stage's parse checks) once per process and copy
    of the stage, or again with `rehash`."""
    key, stamp = os.path.abspath(stage_dir), _stamp(stage_dir)
    files = _manifest(stage_dir) if stamp is not None and stamp[0] == MANIFEST else None
    for name, (size, _) in (files or {}).items():
        try:
            actual = (stage_dir / name).stat().st_size
        except FileNotFoundError:
            raise Damaged(f"{name}: missing (listed in {MANIFEST})") from None
        if actual != size:
            raise Damaged(f"{name}: {actual} bytes, {MANIFEST} says {size}")
    if rehash or key not in _VERDICTS or _VERDICTS[key][0] != stamp:
        problem = _legacy_problem(stage_dir) if files is None else _hash_problem(stage_dir, files)
        _VERDICTS[key] = (stamp, problem)
    if _VERDICTS[key][1] is not None:
        raise Damaged(_VERDICTS[key][1])
    try:
        status = read_json(stage_dir / "status.json")
    except FileNotFoundError:
        raise Damaged("status.json: missing") from None
    except ValueError as err:
        raise Damaged(f"status.json: not valid JSON ({err})") from None
    if not isinstance(status, dict) or status.get("status") not in STATUSES:
        raise Damaged(f"status.json: no status of {' or '.join(STATUSES)}")
    return status


def _manifest(stage_dir: Path) -> dict[str, tuple[int, str]]:
    """name -> (size, sha256) from a stage's manifest; raises Damaged."""
    try:
        files = read_json(stage_dir / MANIFEST)["files"]
        out = {name: (int(e["size"]), str(e["sha256"])) for name, e in files.items()}
    except ValueError as err:
        raise Damaged(f"{MANIFEST}: not valid JSON ({err})") from None
    except (KeyError, TypeError, AttributeError):
        raise Damaged(f"{MANIFEST}: not a list of files with sizes and hashes") from None
    if "status.json" not in out or any(".." in Path(name).parts for name in out):
        raise Damaged(f"{MANIFEST}: lists no status.json, or a file outside the stage")
    return out


def _hash_problem(stage_dir: Path, files: dict[str, tuple[int, str]]) -> str | None:
    for name, (_, digest) in files.items():
        if sha256(stage_dir / name) != digest:
            return f"{name}: content differs from its SHA-256 in {MANIFEST}"
    return None


def _legacy_problem(stage_dir: Path) -> str | None:
    """A stage without a manifest: JSON parses, CSV ends its last line, a .pt zip is whole."""
    for name in _files(stage_dir):
        path = stage_dir / name
        if name.endswith(".json"):
            try:
                read_json(path)
            except ValueError as err:
                return f"{name}: not valid JSON ({err})"
        elif name.endswith(".csv"):
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - 1))
                if f.read(1) != b"\n":
                    return f"{name}: empty or cut short (no newline at its end)"
        elif name.endswith(".pt"):
            try:
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
            except (zipfile.BadZipFile, EOFError) as err:
                return f"{name}: not a whole torch archive ({err})"
            if bad is not None:
                return f"{name}: its member {bad} fails its CRC"
    return None


def _problem(err: Exception) -> str:
    if isinstance(err, OSError):
        return f"cannot be read ({err.strerror or err}: {err.filename})"
    return str(err)


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
        _VERDICTS.pop(os.path.abspath(stage_dir), None)  # hash whatever this process saw
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
    stale = 0
    for lock in runs.glob(".lock-*"):
        owner = _read_owner(lock)
        if not lock.name.endswith(".takeover") and _stale(lock, owner):
            stale += _take_over(lock, owner)
    quarantine = store.root / QUARANTINE
    lines = [
        f"{runs}: {sum(counts.values())} stages checked",
        f"  intact (sizes and SHA-256 match their manifest): {counts['intact']}",
        f"  no manifest (stored before manifests; parse checks passed): {counts['legacy']}",
        f"  damaged (moved to {quarantine}): {counts['damaged']}",
        f"  quarantined, kept for inspection: {len(list(quarantine.glob('*')))}",
        f"  orphaned temporary directories removed: {len(orphans)}; stale locks removed: {stale}",
    ]
    if write_manifests:
        lines.insert(3, f"  manifests written: {counts['sealed']} (skipped: {counts['skipped']})")
    elif counts["legacy"]:
        lines.append("  --write-manifests gives the stages without one a manifest")
    return "\n".join(lines), EXIT_DAMAGED if counts["damaged"] else 0
