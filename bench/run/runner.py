"""The runner: stages -> cache -> joblib.

Stages are grouped in waves by depth (all first rounds, then all self-training rounds); the
stages of a wave are independent and are fanned out with joblib, whose backend is a setting
(loky processes locally; `--backend ray` after `ray.util.joblib.register_ray()` on a cluster).
A stage whose result is stored as ok (and intact: bench/run/store.py) is reused; `force`
recomputes. A failed stage is retried on the next invocation; its children are recorded as
failed without running. A stage that another run (another process, another host) is computing
is waited for in the worker and reused: one computation per stage across runs sharing a store.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from dataclasses import dataclass, replace
from multiprocessing.managers import SyncManager

from joblib import Parallel, delayed, parallel_config
from tqdm.auto import tqdm

from bench.run.dag import Context, Stage
from bench.run.lifeline import exit_with
from bench.run.reproducible import pin_cpu_kernels
from bench.run.store import Store, note_damage, write_json
from iaa_common import UserError


@dataclass(frozen=True)
class Schedule:
    stages: list[Stage]  # unique, parents before children
    cached: set[str]  # ids already stored as ok (reused unless forced)


def schedule(chains: list[list[Stage]], store: Store, force: bool) -> Schedule:
    """Deduplicate the stage chains of many runs, parents first (in the chains' order)."""
    unique: dict[str, Stage] = {}
    for chain in chains:
        for stage in chain:
            unique.setdefault(stage.id, stage)
    ordered = sorted(unique.values(), key=lambda stage: stage.depth)
    cached = set() if force else {s.id for s in ordered if store.is_ok(s.id)}
    return Schedule(ordered, cached)


def check_settings(device: str, backend: str) -> None:
    """UserError for a device this machine lacks or a joblib backend that does not exist."""
    import torch
    from joblib.parallel import BACKENDS

    backends = sorted({*BACKENDS, "ray"})
    if backend not in backends:
        raise UserError(f"unknown --backend '{backend}'; valid: {', '.join(backends)}")
    if device == "auto":
        return
    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise UserError(f"--device {device}: not a device ({err})") from err
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device here (use --device auto or cpu)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: no MPS device here (use --device auto or cpu)")


def default_jobs(device: str) -> int:
    """One stage per CPU core (each stage uses one thread); one at a time on an accelerator."""
    if device != "cpu":
        import torch

        if device != "auto" or torch.cuda.is_available() or torch.backends.mps.is_available():
            return 1
    return os.cpu_count() or 1


def _register_backend(backend: str) -> None:
    if backend == "ray":
        try:
            from ray.util.joblib import register_ray  # optional dependency, cluster use only
        except ImportError as err:
            raise UserError("--backend ray needs Ray: pip install -e '.[ray]'") from err
        register_ray()


def execute(
    the_schedule: Schedule, ctx: Context, jobs: int, backend: str, force: bool = False
) -> dict[str, dict]:
    """Run every stage of the schedule that is not cached; return each stage's outcome (its
    status; `reused`: who computed it, when another run did)."""
    store = Store(ctx.results)
    store.clean_temporaries()
    todo = [s for s in the_schedule.stages if s.id not in the_schedule.cached]
    if not todo:
        return {}
    pin_cpu_kernels()  # the worker processes started below inherit it
    from bench.run.stages import run_stage  # torch is loaded only when something must run

    _register_backend(backend)
    backend_config, started_ray = {}, False
    if backend == "ray":
        from bench.run import ray_cluster

        started_ray = ray_cluster.connect(jobs)
        ray_cluster.check_store(ctx.results)
        backend_config = {"ray_remote_args": ray_cluster.remote_args(todo, ctx.device)}
        epoch_bars = _EpochBars(ray_cluster.progress_queue())
    else:  # a Ray worker's parent is its node's raylet, not this process
        ctx = replace(ctx, runner_pid=os.getpid())
        epoch_bars = _EpochBars()
    outcomes: dict[str, dict] = {}
    bar = tqdm(total=len(todo), desc="stages", unit="stage")
    progress = epoch_bars.queue
    run_by = f"{socket.gethostname()}:{os.getpid()}"
    try:
        for depth in sorted({s.depth for s in todo}):
            wave = [s for s in todo if s.depth == depth]
            runnable = []
            for stage in wave:
                if stage.parent is not None and not store.is_ok(stage.parent.id):
                    outcomes[stage.id] = failed_upstream(stage, store)
                    bar.update()
                else:
                    runnable.append(stage)
            with parallel_config(backend=backend, n_jobs=jobs, **backend_config):
                # Ray's joblib backend returns a wave's outcomes together (the epoch bars move)
                order = "list" if backend == "ray" else "generator_unordered"
                results = Parallel(return_as=order)(
                    delayed(run_stage)(stage, ctx, progress, force, run_by) for stage in runnable
                )
                for outcome in results:
                    note_damage(outcome.pop("damage", {}))
                    outcomes[outcome["id"]] = outcome
                    reused = f" (by {outcome['reused']})" if "reused" in outcome else ""
                    bar.set_postfix_str(f"last: {outcome['status']}{reused}")
                    bar.update()
    finally:
        bar.close()
        epoch_bars.close()
        if started_ray:
            import ray

            ray.shutdown()
    reused = sum("reused" in outcome for outcome in outcomes.values())
    print(
        f"stages: {len(outcomes) - reused} computed by this run ({run_by}), {reused} computed "
        "by another run and reused",
        file=sys.stderr,
    )
    return outcomes


class _EpochBars:
    """One tqdm bar per running stage, drawn here from the epochs the workers report on
    `queue` (a Ray queue), or on a queue of a local manager process started here; a line of
    text on the queue (a worker waiting for another run's stage) is printed above the bars."""

    def __init__(self, queue=None):
        self._manager = None
        if queue is None:
            self._manager = SyncManager()
            self._manager.start(exit_with, (os.getpid(),))
            queue = self._manager.Queue()
        self.queue = queue
        self._thread = threading.Thread(target=self._draw, daemon=True)
        self._thread.start()

    def _draw(self) -> None:
        bars: dict[str, tqdm] = {}
        while (message := self.queue.get()) is not None:
            if isinstance(message, str):
                tqdm.write(message, file=sys.stderr)
                continue
            stage_id, kind, epoch, epochs, loss, srcc = message
            if stage_id not in bars:
                bars[stage_id] = tqdm(
                    total=epochs, desc=f"{kind} {stage_id[:8]}", unit="epoch", leave=False
                )
            if epoch > 0:
                bars[stage_id].update(epoch - bars[stage_id].n)
                bars[stage_id].set_postfix(loss=f"{loss:.4f}", val_srcc=f"{srcc:.3f}")
            if epoch == epochs:
                bars.pop(stage_id).close()
        for open_bar in bars.values():
            open_bar.close()

    def close(self) -> None:
        self.queue.put(None)
        self._thread.join()
        if self._manager is not None:
            self._manager.shutdown()


def failed_upstream(stage: Stage, store: Store) -> dict:
    """Record a stage that cannot run because its parent failed (under the stage's lock: one
    that another run stored meanwhile is reused)."""
    with store.claim(stage.id) as claim:
        if claim.reuse is not None:
            return {"id": stage.id, **claim.reuse}
        parent = store.status(stage.parent.id) or {}
        out = store.begin(stage.id)
        write_json(out / "config.json", stage.config)
        reason = f"{stage.parent.kind} failed ({parent.get('reason', 'unknown')})"
        status = {"status": "failed", "reason": reason}
        write_json(out / "status.json", status)
        store.commit(out, stage.id)
    return {"id": stage.id, **status}
