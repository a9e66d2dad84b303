"""The runner: stages -> cache -> joblib or Ray.

Stages are grouped in waves by depth (all first rounds, then all self-training rounds); the
stages of a wave are independent and are fanned out `jobs` at a time: with joblib (loky
processes by default; `jobs` 1 runs them in this process), or as Ray tasks (`--backend ray`,
bench/run/ray_cluster.py: each asks for the CPUs of its data loader, never more than a node has).
Wherever a stage runs, its data loader's workers start (bench.data.loading.LOADER_START_METHOD).
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

from joblib import Parallel, delayed
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


# Where stages can run: joblib's backends whose workers may start processes (a stage's data
# loader starts its own), and Ray tasks.
BACKENDS = ("loky", "ray", "sequential", "threading")


def check_settings(device: str, backend: str) -> None:
    """UserError for a device this machine lacks or a backend that cannot run the stages."""
    import torch

    if backend == "multiprocessing":
        raise UserError(
            "--backend multiprocessing: its pool's processes are daemonic and cannot start a "
            "data loader's workers; use loky"
        )
    if backend not in BACKENDS:
        raise UserError(f"unknown --backend '{backend}'; valid: {', '.join(BACKENDS)}")
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

    if backend == "ray":
        from bench.run import ray_cluster

        started_ray = ray_cluster.connect(jobs)
        try:
            ray_cluster.check_store(ctx.results)
            resources = ray_cluster.stage_resources(ray_cluster.loader_workers(todo), ctx.device)
        except BaseException:  # a store the workers cannot write, a request no node can meet
            _stop_ray(started_ray)
            raise
        epoch_bars = _EpochBars(ray_cluster.progress_queue())
    else:  # a Ray worker's parent is its node's raylet, not this process
        started_ray, resources = False, {}
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
            calls = [(stage, ctx, progress, force, run_by) for stage in runnable]
            if backend == "ray":
                results = ray_cluster.run_tasks(run_stage, calls, resources, jobs)
            else:
                results = Parallel(n_jobs=jobs, backend=backend, return_as="generator_unordered")(
                    delayed(run_stage)(*call) for call in calls
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
        _stop_ray(started_ray)
    reused = sum("reused" in outcome for outcome in outcomes.values())
    print(
        f"stages: {len(outcomes) - reused} computed by this run ({run_by}), {reused} computed "
        "by another run and reused",
        file=sys.stderr,
    )
    return outcomes


def _stop_ray(started: bool) -> None:
    """Shut down the Ray connection this run started, if it started one."""
    if started:
        import ray

        ray.shutdown()


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
