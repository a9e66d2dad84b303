"""Running the stages on a Ray cluster (`--backend ray`): what the runner needs beyond joblib.

- `connect`: join the cluster at RAY_ADDRESS, or start a local one (loopback only, no
  dashboard, `jobs` CPUs); the workers get the pinned CPU kernels (bench/run/reproducible.py) as
  runtime environment variables, wherever they run.
- `check_store`: a task on a worker writes and removes a file in the results store, so that a
  store not shared with the workers stops the run at once with one line, not stage by stage.
- `remote_args`: the resources of each stage's Ray actor: one CPU per stage thread plus the
  data-loading workers of its profile, one GPU with `--device cuda`.
- `progress_queue`: a Ray queue the workers put their epochs on; the runner draws them.

Each stage still writes its own log.txt in the store, as with loky.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from bench.run.dag import Stage
from bench.run.reproducible import pin_cpu_kernels
from iaa_common import UserError


def connect(jobs: int) -> bool:
    """Join RAY_ADDRESS's cluster or start a local one; True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    pinned = pin_cpu_kernels()  # a local cluster's workers inherit this process's environment
    address = os.environ.get("RAY_ADDRESS")
    if address:  # other nodes: the variables travel with the job
        ray.init(address=address, runtime_env={"env_vars": pinned}, log_to_driver=False)
    else:
        ray.init(
            num_cpus=jobs,
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


def remote_args(stages: list[Stage], device: str) -> dict:
    """Ray resources of each stage's actor (the largest any stage of the plan needs)."""
    workers = max(stage.config.get("parent", stage.config)["profile"]["num_workers"]
                  for stage in stages)  # fmt: skip
    resources = {"num_cpus": 1 + workers}
    if device.startswith("cuda"):
        resources["num_gpus"] = 1
    return resources


def progress_queue():
    """A queue the workers report their epochs on (a Ray actor)."""
    from ray.util.queue import Queue

    return Queue(actor_options={"num_cpus": 0})  # an actor reserves a CPU by default
