"""Running the stages on a Ray cluster (`--backend ray`).

- `connect`: join the cluster at RAY_ADDRESS, or start a local one (loopback only, no
  dashboard, as many CPUs as this machine's usable cores or `jobs`, whichever is more); the
  workers get the pinned CPU kernels (bench/run/reproducible.py) as runtime environment
  variables, wherever they run.
- `check_store`: a task on a worker writes and removes a file in the results store, so that a
  store not shared with the workers stops the run at once with one line, not stage by stage.
- `stage_resources`: what each stage's task asks Ray for: one CPU for the stage's thread plus
  its profile's data-loading workers, capped at the CPUs of the largest node that can run it,
  and one GPU with `--device cuda`. A request no node can meet is a one-line error before
  anything runs, never a task Ray keeps pending. In the task, the loader's workers fit the CPUs
  it was given (bench.train.settings.usable_cores).
- `run_tasks`: the stages of a wave as Ray tasks, `jobs` of them at most at once (Ray starts a
  task when a node has its resources free), their outcomes as they end.
- `progress_queue`: a Ray queue the workers put their epochs on; the runner draws them.

Each stage still writes its own log.txt in the store, as with loky.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from bench.run.dag import Stage
from bench.run.reproducible import pin_cpu_kernels
from bench.train.settings import usable_cores
from iaa_common import UserError

T = TypeVar("T")


def connect(jobs: int) -> bool:
    """Join RAY_ADDRESS's cluster or start a local one; True if this call started it. UserError
    when Ray is not installed."""
    try:
        import ray  # optional dependency, cluster use only
    except ImportError as err:
        raise UserError("--backend ray needs Ray: pip install -e '.[ray]'") from err

    if ray.is_initialized():
        return False
    pinned = pin_cpu_kernels()  # a local cluster's workers inherit this process's environment
    address = os.environ.get("RAY_ADDRESS")
    if address:  # other nodes: the variables travel with the job
        ray.init(address=address, runtime_env={"env_vars": pinned}, log_to_driver=False)
    else:
        ray.init(
            num_cpus=max(jobs, usable_cores()),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
        )
    return True


def _probe(runs: str) -> str:
    """On a worker: create and remove a file in the store; the worker's host name."""
    Path(runs).mkdir(parents=True, exist_ok=True)
    probe = Path(runs) / f".probe-{socket.gethostname()}-{os.getpid()}"
    probe.write_text("ok")
    probe.unlink()
    return socket.gethostname()


def check_store(results: Path) -> None:
    """UserError when a Ray worker cannot write to the results store."""
    import ray

    runs = str((results / "runs").resolve())
    try:
        ray.get(ray.remote(num_cpus=0)(_probe).remote(runs), timeout=120)
    except Exception as err:  # the worker's error, whatever it is, in one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        raise UserError(
            f"--backend ray: a worker cannot write to the results store {runs} ({first}); "
            "put --results on a path every node sees"
        ) from None


def loader_workers(stages: list[Stage]) -> int:
    """The most data-loading workers the profile of any of these stages has."""
    return max(stage.config.get("parent", stage.config)["profile"]["num_workers"]
               for stage in stages)  # fmt: skip


def _count(amount: float, unit: str) -> str:
    return f"{amount:g} {unit}{'' if amount == 1 else 's'}"


def _describe(nodes: list[dict[str, float]]) -> str:
    """'2 x (16 CPUs, 1 GPU), 1 x (4 CPUs, 0 GPUs)': the nodes' sizes, largest first."""
    sizes = Counter((node.get("CPU", 0), node.get("GPU", 0)) for node in nodes)
    return ", ".join(
        f"{n} x ({_count(cpus, 'CPU')}, {_count(gpus, 'GPU')})"
        for (cpus, gpus), n in sorted(sizes.items(), reverse=True)
    )


def stage_resources(workers: int, device: str) -> dict[str, int]:
    """The Ray resources of a stage's task: one CPU for the stage's thread plus `workers` for
    its data loader, but no more CPUs than the largest node alive that can run the stage has,
    and one GPU with `--device cuda`. UserError when no node alive has one CPU (and the GPU) to
    give: a GPU asked of a cluster without GPUs, nodes without CPUs. Ray would keep such a task
    pending for ever."""
    import ray

    gpus = 1 if device.startswith("cuda") else 0
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    cpus = [int(node.get("CPU", 0)) for node in nodes if node.get("GPU", 0) >= gpus]
    if max(cpus, default=0) < 1:
        asked = "1 CPU and 1 GPU (--device cuda)" if gpus else "1 CPU"
        raise UserError(
            f"--backend ray: no node of the cluster can run a stage, which needs at least "
            f"{asked} on one node (the cluster's nodes: {_describe(nodes)})"
        )
    resources = {"num_cpus": min(1 + workers, max(cpus))}
    if gpus:
        resources["num_gpus"] = gpus
    return resources


def run_tasks(
    function: Callable[..., T], calls: list[tuple], resources: dict[str, int], jobs: int
) -> Iterator[T]:
    """`function(*call)` for each call as a Ray task asking for `resources`, at most `jobs` of
    them submitted at once; each result as its task ends. A task whose worker dies is not
    retried: the run stops, as with loky."""
    import ray

    task = ray.remote(**resources, max_retries=0)(function)
    waiting, running = list(calls), []
    while waiting or running:
        while waiting and len(running) < jobs:
            running.append(task.remote(*waiting.pop(0)))
        done, running = ray.wait(running, num_returns=1)
        yield ray.get(done[0])


def progress_queue():
    """A queue the workers report their epochs on (a Ray actor)."""
    from ray.util.queue import Queue

    return Queue(actor_options={"num_cpus": 0})  # an actor reserves a CPU by default
