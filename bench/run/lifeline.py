"""A child of the runner (a loky worker, the progress queue's manager) ends with its runner."""

from __future__ import annotations

import os
import threading
import time

_WATCHING: set[int] = set()  # the parents this process already watches


def exit_with(parent: int) -> None:
    """In a child of the runner (a worker, the progress queue's manager): exit as soon as the
    runner is gone, even when it was killed with SIGKILL, which it cannot pass on (a child left
    alone would compute for nothing or idle forever, and keep the resource trackers alive).
    A stage being computed is then absent from the store, never half-written."""
    if parent in _WATCHING or os.getpid() == parent:
        return
    _WATCHING.add(parent)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
