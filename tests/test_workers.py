"""A stage's data loader starts its workers wherever the stage runs (issue 18): image files
load with two DataLoader workers in the main process, in a loky worker and in a Ray task, and
give the same batches as without workers; loader workers never outnumber the cores, nor the CPUs
Ray gave the task; a Ray request that no node can meet is a one-line error at start; a joblib
backend whose processes cannot have children is refused."""

import importlib.util
import multiprocessing
import os
import sys

import pytest
import torch
from joblib import Parallel, delayed

from bench.data.fixtures import write_fixtures
from bench.data.loading import batches
from bench.data.real import load_aadb
from bench.data.types import Split
from bench.profiles import PROFILES
from bench.run.runner import check_settings
from bench.train.settings import train_settings, usable_cores
from iaa_common import UserError

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is not installed"
)
PAPER = PROFILES["paper"]  # 8 loader workers


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Split:
    """AADB's training split in its official layout: 8 JPEGs, long side 800-1024 px."""
    root = tmp_path_factory.mktemp("data")
    write_fixtures(root, n_train=8, n_val=2, n_test=2)
    return load_aadb(root / "AADB").train


def load(split: Split, workers: int) -> tuple[list[int], float, int]:
    """Every image of the split through `batches` with `workers` loader workers: the rows in the
    order they came, the sum of the pixels, and the most loader processes seen alive at once
    (children of this process started while loading)."""
    before = {child.pid for child in multiprocessing.active_children()}
    rows, total, alive = [], 0.0, 0
    for batch in batches(
        split, 3, train=False, img_size=32, device=torch.device("cpu"),
        generator=torch.Generator(), num_workers=workers,
    ):  # fmt: skip
        rows += batch.index.tolist()
        total += batch.x.double().sum().item()
        children = {child.pid for child in multiprocessing.active_children()}
        alive = max(alive, len(children - before))
    return rows, total, alive


def paper_workers() -> int:
    """The loader workers of a stage at the paper profile, where this runs."""
    return train_settings({"img_size": 32}, PAPER, torch.device("cpu")).num_workers


def load_elsewhere(split: Split, workers: int | None) -> tuple[int, int, tuple]:
    """In a worker: its process id, the loader workers (None: a paper stage's, where this
    runs) and `load` with them."""
    workers = paper_workers() if workers is None else workers
    return os.getpid(), workers, load(split, workers)


def test_image_files_load_with_two_workers_in_the_main_process(split):
    rows, total, _ = load(split, 0)
    assert rows == list(range(8))
    assert load(split, 2) == (rows, pytest.approx(total), 2)


def test_image_files_load_with_two_workers_in_a_loky_worker(split):
    """The bug: torch's default start method inside a loky worker is loky's, which cannot
    start torch's Process ('Process' object has no attribute 'env')."""
    rows, total, _ = load(split, 0)
    [(pid, _, loaded)] = Parallel(n_jobs=2, backend="loky")([delayed(load_elsewhere)(split, 2)])
    assert pid != os.getpid() and loaded == (rows, pytest.approx(total), 2)


def test_loader_workers_never_outnumber_the_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert usable_cores() == 1 and paper_workers() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert usable_cores() == 3 and paper_workers() == 3


def test_a_backend_whose_processes_cannot_have_children_is_refused():
    with pytest.raises(UserError, match="daemonic"):
        check_settings("cpu", "multiprocessing")
    check_settings("cpu", "loky")  # no error


@needs_ray
def test_a_stage_asks_ray_for_no_more_cpus_than_a_node_has(monkeypatch):
    import ray

    from bench.run.ray_cluster import stage_resources

    dead = {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}  # never counted

    def nodes(*sizes):
        return lambda: [*({"Alive": True, "Resources": size} for size in sizes), dead]

    monkeypatch.setattr(ray, "nodes", nodes({"CPU": 16.0}, {"CPU": 4.0, "GPU": 1.0}))
    assert stage_resources(8, "cpu") == {"num_cpus": 9}
    assert stage_resources(32, "cpu") == {"num_cpus": 16}
    assert stage_resources(8, "cuda") == {"num_cpus": 4, "num_gpus": 1}  # the GPU node's CPUs
    monkeypatch.setattr(ray, "nodes", nodes({"CPU": 16.0}, {"CPU": 2.0}))
    with pytest.raises(UserError) as error:
        stage_resources(8, "cuda")
    message = str(error.value)
    assert "1 CPU and 1 GPU" in message and "1 x (16 CPUs, 0 GPUs)" in message
    assert "1 x (2 CPUs, 0 GPUs)" in message and "\n" not in message
    monkeypatch.setattr(ray, "nodes", nodes({"CPU": 0.0}))  # a head node without CPUs
    with pytest.raises(UserError, match=r"needs at least 1 CPU on one node.*\(0 CPUs, 0 GPUs\)"):
        stage_resources(0, "cpu")


@needs_ray
def test_image_files_load_in_a_ray_task_with_the_cpus_it_was_given(split):
    import ray

    from bench.run import ray_cluster

    started = ray_cluster.connect(2)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray cannot import tests
    try:
        cluster = ray.cluster_resources()
        largest = max(int(node["Resources"].get("CPU", 0)) for node in ray.nodes())
        resources = ray_cluster.stage_resources(PAPER.num_workers, "cpu")
        assert resources == {"num_cpus": min(1 + PAPER.num_workers, largest)}
        calls = [(split, None)]
        [(pid, workers, loaded)] = ray_cluster.run_tasks(load_elsewhere, calls, resources, 2)
        rows, total, _ = load(split, 0)
        assert pid != os.getpid() and workers == min(PAPER.num_workers, resources["num_cpus"])
        assert loaded == (rows, pytest.approx(total), workers)
        # a task given one CPU loads with one worker, whatever the machine has
        assert ray.get(ray.remote(num_cpus=1)(paper_workers).remote()) == 1
        if not cluster.get("GPU"):  # a GPU asked of a cluster without: at once, one line
            with pytest.raises(UserError, match=r"1 GPU \(--device cuda\).* 0 GPUs"):
                ray_cluster.stage_resources(PAPER.num_workers, "cuda")
    finally:
        if started:
            ray.shutdown()
