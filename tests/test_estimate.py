"""The dry run's estimate (bench/run/estimate.py): a stage's work over a measured rate, computed
by hand here from rates the tests write; unknown without a rate, naming the command that measures
it; one stage at a time on a GPU, one per core on the CPU. No training, no timing."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import run_all
from bench.dev import model_perf
from bench.run.dag import RunRequest, Stage, stages_for
from bench.run.estimate import RATES, StageCosts, device_kind, estimate
from bench.run.store import RUNS, Store
from bench.train.methods import MethodOptions
from iaa_common import UserError

ELTA = MethodOptions(tfa=True, flsa_weight=1.0, apds=True)
# smoke synth-ava: 96 / 48 / 64 images, a pool of 96; 2 epochs, 1 self-training epoch
ROUND1_WORK = 2 * 96 + (2 * 48 + 64) / 3  # trained + evaluated / 3
SELFTRAIN_WORK = 1 * (96 + 96) + (24 + 96 + 48 + 64) / 3  # search: half of val; the pool


def _stages(seeds: int = 1, model: str = "swinv2") -> list[Stage]:
    chains = [stages_for(RunRequest("synth-ava", model, "smoke", s, ELTA)) for s in range(seeds)]
    return sorted((stage for chain in chains for stage in chain), key=lambda s: s.depth)


def _nima_on_aadb() -> list[Stage]:
    """NIMA's round 1 and self-training round on AADB at paper (its ImageNet file given)."""
    weights = {"backbone": "bn_inception.pth"}
    return stages_for(RunRequest("aadb", "nima", "paper", 0, ELTA, "/data", weights))


def _write_rates(results: Path, *rates: tuple[str, str, str, float]) -> None:
    records = [
        {"model": m, "profile": p, "device": d, "images_per_s": r, "when": f"2025-01-0{k + 1}"}
        for k, (m, p, d, r) in enumerate(rates)
    ]
    results.mkdir(parents=True, exist_ok=True)
    (results / RATES).write_text(json.dumps({"rates": records}))


def _store_stage(results: Path, stage: Stage, seconds: float, device: str, host: str) -> None:
    folder = results / RUNS / f"{stage.id}-{device}"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(stage.config))
    (folder / "status.json").write_text(json.dumps({"status": "ok", "seconds": seconds}))
    (folder / "versions.json").write_text(json.dumps({"device": device, "host": host}))


def test_a_recorded_rate_gives_the_seconds_computed_by_hand(tmp_path):
    _write_rates(tmp_path, ("swinv2", "smoke", "cpu", 100.0))
    stages = _stages(seeds=2)  # two round 1s, then their two self-training rounds
    result = estimate(stages, Store(tmp_path), "cpu", jobs=2, backend="loky")
    seconds = 2 * ROUND1_WORK / 100 + 2 * SELFTRAIN_WORK / 100
    assert result.total_s == pytest.approx(seconds)
    assert result.wall_s == pytest.approx(ROUND1_WORK / 100 + SELFTRAIN_WORK / 100)  # two waves
    text = result.describe()
    assert "swinv2 at smoke: 100.00 images/s, bench.dev.model_perf, 2025-01-01" in text
    assert "estimated wall time 5 s with 2 stage(s) at once (--jobs); 10 s of stage time" in text


def test_real_datasets_at_their_official_sizes(tmp_path):
    _write_rates(tmp_path, ("nima", "paper", "cpu", 200.0))
    round1, selftrain = _nima_on_aadb()
    costs = StageCosts(Store(tmp_path), "cpu")
    # AADB 8,458 / 500 / 1,000; NIMA's recipe: 100 epochs; the paper profile: 20 self-training
    assert costs(round1) == pytest.approx((100 * 8458 + (100 * 500 + 1000) / 3) / 200)
    pool = 8458  # the other three datasets' training splits, at most AADB's
    evaluated = 250 + pool + 20 * 500 + 1000
    assert costs(selftrain) == pytest.approx((20 * (8458 + pool) + evaluated / 3) / 200)


def test_a_cached_listing_gives_a_real_datasets_sizes(tmp_path):
    listing = tmp_path / "cache" / "real" / "aadb-0123.npz"
    listing.parent.mkdir(parents=True)
    np.savez(listing, train_scores=np.zeros(40), val_scores=np.zeros(5), test_scores=np.zeros(7))
    sizes = StageCosts(Store(tmp_path)).sizes(_nima_on_aadb()[0].config)
    assert (sizes.train, sizes.val, sizes.test, sizes.pool) == (40, 5, 7, 40)


def test_a_stored_stage_gives_its_rate_and_wins_over_a_recorded_one(tmp_path):
    _write_rates(tmp_path, ("swinv2", "smoke", "cpu", 100.0))
    seed0, seed1 = _stages(seeds=2)[:2]  # the two round 1s
    _store_stage(tmp_path, seed0, 4.0, "cpu", "another-host")
    # --device auto on another host: which device it found is not recorded, so it is not used
    _store_stage(tmp_path, seed0, 1.0, "auto", "another-host")
    costs = StageCosts(Store(tmp_path), "cpu")
    assert costs(seed1) == pytest.approx(4.0)  # the same work at the stored stage's rate
    assert costs.rate(seed1).source == "1 stored stage"


def test_without_a_rate_the_estimate_is_unknown_and_names_the_command(tmp_path):
    text = estimate(_stages(), Store(tmp_path), "cpu", jobs=None, backend="loky").describe()
    assert "swinv2 at smoke: unknown" in text
    assert (
        "estimated wall time unknown for 2 stage(s) (no rate for swinv2 at profile smoke on cpu): "
        "measure with python -m bench.dev.model_perf --models swinv2 --profile smoke --device cpu"
    ) in text
    assert " s with " not in text and " min with " not in text  # no number is guessed


def test_some_rates_estimate_their_stages_and_name_the_rest(tmp_path):
    _write_rates(tmp_path, ("swinv2", "smoke", "cpu", 100.0))
    result = estimate(_stages() + _stages(model="nima"), Store(tmp_path), "cpu", 1, "loky")
    assert (result.known, result.n_unknown, result.unknown) == (2, 2, {"smoke": ["nima"]})
    assert result.total_s == pytest.approx((ROUND1_WORK + SELFTRAIN_WORK) / 100)
    assert "for 2 of 4 stages" in result.describe()


def test_stages_on_a_gpu_run_one_at_a_time_whatever_the_cores(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a dry run without the GPU
    _write_rates(tmp_path, ("swinv2", "smoke", "cuda:NVIDIA H200", 100.0))
    result = estimate(_stages(seeds=3), Store(tmp_path), "cuda", jobs=None, backend="loky")
    assert result.kind == "cuda" and result.jobs == 1
    assert result.wall_s == pytest.approx(result.total_s)
    assert result.total_s == pytest.approx(3 * (ROUND1_WORK + SELFTRAIN_WORK) / 100)
    text = result.describe()
    assert "1 stage(s) at once (one at a time on the GPU)" in text
    assert "100.00 images/s on cuda:NVIDIA H200" in text  # the GPU it was measured on
    ray = estimate(_stages(), Store(tmp_path), "cuda", jobs=None, backend="ray").describe()
    assert "give --jobs N for the Ray cluster's N GPUs" in ray
    assert estimate(_stages(), Store(tmp_path), "cuda", jobs=4, backend="ray").jobs == 4


def test_on_a_gpu_only_rates_of_its_kind_serve(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "NVIDIA H200")
    assert device_kind("cuda") == "cuda:NVIDIA H200" == device_kind("auto")
    _write_rates(
        tmp_path, ("swinv2", "smoke", "cuda:NVIDIA T4", 9.0), ("swinv2", "smoke", "cpu", 5.0)
    )
    text = estimate(_stages(), Store(tmp_path), "cuda", jobs=None, backend="loky").describe()
    assert "no rate for swinv2 at profile smoke on cuda:NVIDIA H200" in text
    assert "--device cuda" in text and "(on a machine with a GPU)" not in text


def test_on_the_cpu_one_stage_per_core_unless_jobs_says_otherwise(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    _write_rates(tmp_path, ("swinv2", "smoke", "cpu", 100.0))
    result = estimate(_stages(seeds=7), Store(tmp_path), "cpu", jobs=None, backend="loky")
    assert result.jobs == 7
    assert result.wall_s == pytest.approx((ROUND1_WORK + SELFTRAIN_WORK) / 100)  # 7 in each wave
    assert "7 stage(s) at once (one per CPU core, one thread each)" in result.describe()
    assert estimate(_stages(), Store(tmp_path), "cpu", jobs=3, backend="loky").jobs == 3


def test_a_dry_run_prints_the_estimate_with_the_runners_stages_at_once(tmp_path, capsys):
    _write_rates(tmp_path, ("swinv2", "smoke", "cpu", 100.0))
    args = ["--table", "4", "--profile", "smoke", "--dry-run", "--results", str(tmp_path)]
    assert run_all.main([*args, "--device", "cpu", "--jobs", "3"]) == 0
    out = capsys.readouterr().out
    assert "8 stages: 0 cached, 8 to run" in out
    assert "estimated wall time 7 s with 3 stage(s) at once (--jobs)" in out


def test_a_damaged_rates_file_is_one_line_naming_it(tmp_path):
    (tmp_path / RATES).write_text('{"rates": [{"model": "nima"}]}')
    with pytest.raises(UserError, match=f"{tmp_path / RATES}: a rate without"):
        StageCosts(Store(tmp_path), "cpu")
    (tmp_path / RATES).write_text("{")
    with pytest.raises(UserError, match="not a rates file"):
        StageCosts(Store(tmp_path), "cpu")


def test_model_perf_records_the_rate_the_estimate_then_uses(tmp_path, capsys):
    argv = ["--models", "nima", "--profile", "smoke", "--steps", "1", "--results", str(tmp_path)]
    assert model_perf.main(argv) == 0
    (record,) = json.loads((tmp_path / RATES).read_text())["rates"]
    assert (record["model"], record["profile"], record["device"]) == ("nima", "smoke", "cpu")
    assert record["images_per_s"] > 0 and record["batch"] == 16 and record["steps"] == 1
    rate = StageCosts(Store(tmp_path), "cpu").rate(_stages(model="nima")[0])
    assert rate.images_per_s == record["images_per_s"] and "bench.dev.model_perf" in rate.source
    assert model_perf.main(["--quick", *argv]) == 0  # a glance: not recorded
    assert len(json.loads((tmp_path / RATES).read_text())["rates"]) == 1
