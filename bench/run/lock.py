"""One computation per stage across processes: a lock file per stage in the store (used by
bench/run/store.py).

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
import socket
import threading
import time
from pathlib import Path

POLL_S = 2.0  # a waiting process looks at a busy lock this often
HEARTBEAT_S = 10.0  # a lock's owner touches it this often
STALE_AFTER_S = 120.0  # a lock not touched for this long is taken over (mind clock skew)
HOST = socket.gethostname()

# The locks this process holds (absolute lock paths).
_HELD: set[str] = set()


def holds(path: Path) -> bool:
    """Whether this process holds the lock at `path`."""
    return os.path.abspath(path) in _HELD


class Busy(Exception):
    """A stage's lock is held by a live process (`owner`: host:pid)."""

    def __init__(self, owner: str):
        super().__init__(owner)
        self.owner = owner


class Lock:
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
        if read_owner(self.path).get("token") == self.token:  # not if taken over meanwhile
            self.path.unlink(missing_ok=True)


def read_owner(path: Path) -> dict:
    """A lock's content; {} when absent or still being written."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def owner_name(owner: dict) -> str:
    return f"{owner.get('host', '?')}:{owner.get('pid', '?')}"


def stale(path: Path, owner: dict) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False  # released meanwhile
    if age > STALE_AFTER_S:
        return True
    pid = owner.get("pid")
    return owner.get("host") == HOST and isinstance(pid, int) and not alive(pid)


def take_over(path: Path, seen: dict) -> bool:
    """Remove a stale lock if it is still the one seen, one process at a time."""
    guard = path.with_name(path.name + ".takeover")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        if stale(guard, {}):  # its taker died within the few lines below
            guard.unlink(missing_ok=True)
        return False
    try:
        if read_owner(path) == seen:
            path.unlink(missing_ok=True)
            return True
        return False
    finally:
        os.close(fd)
        guard.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
