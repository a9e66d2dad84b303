"""How long the stages a plan still has to run will take: each stage's work over the measured
throughput of its model on the device, never a flat guess.

Work, in training images (one image through one training step):

    work = passes x (images trained) + (images evaluated) / 3

    stage      images trained                        images evaluated
    round1     E x n_train                           E x n_val + n_test
    selftrain  E_st x (n_train + n_pseudo)           n_search + n_pool + E_st x n_val + n_test
    pretrain   E_pre x n_train                       E_pre x n_val
    evaluate   0                                     n_test

E is the recipe's epochs (else the profile's), E_st the profile's self-training epochs, E_pre
the pre-trained part's; n_search is APDS's share of the validation split. An evaluated image
costs a third of a trained one (a forward pass, no backward, no optimizer step). `passes` is the
procedure's `inner_steps` (BIAA's meta-learning trains each image that many times an epoch),
else 1. n_pseudo is not known before the stage runs: the pool is taken whole (an upper bound);
a stored self-training stage gives its count (metrics.json).

Data sizes: the embedded benchmark's are the profile's (`synth_sizes`, the pool clipped to
n_train). A real dataset's are those of its newest cached listing (results/cache/real/, written
when it is first loaded), else the official sizes in `OFFICIAL` with the loaders' validation
carve (bench/data/real.py); its pool is the other three datasets' training splits (Appendix A.2,
all four under the data root), at most n_train, and n_train with `--unlabeled`.

Rates, training images per second for (model, profile, device kind):

1. stored stages: the ok round1 and selftrain stages of the results store, their work over their
   seconds, pooled (pretrain stages give the rate of pre-training; evaluate stages none: loading
   dominates them). They include data loading and start-up.
2. recorded: `RATES` in the results store, written by `python -m bench.dev.model_perf` (the
   training step alone, on random tensors already on the device).

Of the rates that match the stage's device kind, the exact kind wins over one that matches only
as "a GPU" (one of the two unnamed), then stored stages over recorded rates, then the newest. A
pretrain stage without a pretrain rate takes its model's rate (the part is smaller: an upper
bound). A stage without a rate is "unknown", and the estimate names the command that measures
it.

Device kinds: "cpu", "cuda:<name>" (cuda:NVIDIA H200), "mps". `--device auto` and `cuda` are
resolved here; `--device cuda` on a machine without a GPU is "cuda", served by the rates of any
GPU (the newest; the rate's line names its GPU). A stored stage's kind: its versions.json device,
resolved here when it ran on this host; "cpu" anywhere; elsewhere "cuda..." is a GPU whose name
was not recorded ("cuda") and "auto" is unknown (not used).

Stages at once, as the runner runs them (bench.run.runner.default_jobs): `--jobs`, else one per
core on the CPU (one thread each) and one at a time on a GPU (every stage on the device that
`--device` names); `--backend ray` runs `--jobs` stages at once, a GPU each, so the cluster's
GPUs need `--jobs` (a dry run does not join the cluster to count them). The wall time
adds the waves of stages (a self-training round waits for its round 1), each its total over the
stages at once and at least its longest stage: stages of different lengths do not pack
perfectly, so it is a guide, not a promise.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.run.dag import Stage
from bench.run.store import RUNS, Store
from iaa_common import UserError

RATES = "rates.json"  # in the results store's root, written by bench.dev.model_perf
EVAL_COST = 1 / 3  # an evaluated image, in trained images
# (train, val, test) of each real dataset after the loaders carve validation from train
OFFICIAL = {
    # about 255,000 listed in AVA.txt, 20,000 test ids (generic_test.jpgl); val: 5 % of the rest
    "ava": (223_250, 11_750, 20_000),
    "aadb": (8_458, 500, 1_000),  # the official train / validation / test lists
    "tad66k": (47_023, 5_225, 14_079),  # 52,248 train, 14,079 test; val: 10 % of train
    "para": (25_398, 2_822, 3_000),  # 28,220 train, 3,000 test; val: 10 % of train
}


@dataclass(frozen=True)
class DataSizes:
    train: int
    val: int
    test: int
    pool: int  # the APDS pool (pseudo-labelled at most n_train)


@dataclass(frozen=True)
class Rate:
    images_per_s: float  # training images per second (module docstring)
    kind: str  # the device kind it was measured on
    source: str  # where it comes from, in words
    stored: bool  # from stored stages (else recorded by bench.dev.model_perf)
    when: str  # ISO time of the newest measurement
    role: str = "train"  # "pretrain": of pre-training a part


def device_kind(device: str) -> str:
    """A device's kind: cpu, cuda:<GPU name>, mps; cuda for a CUDA device not here."""
    if device == "cpu":
        return "cpu"
    import torch

    if device == "auto" and not torch.cuda.is_available():  # as bench.run.stages resolves it
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if device == "auto":
        device = "cuda"
    where = torch.device(device)
    if where.type == "cuda" and torch.cuda.is_available():
        index = where.index if where.index is not None else torch.cuda.current_device()
        return f"cuda:{torch.cuda.get_device_name(index)}"
    return where.type


def _matches(wanted: str | None, kind: str | None) -> int:
    """2: the same kind; 1: both GPUs, one of them unnamed ("cuda"); 0: no match. `wanted`
    None (ordering a plan, no device named) takes any kind."""
    if kind is None:
        return 0
    if wanted is None or wanted == kind:
        return 2
    gpus = wanted.startswith("cuda") and kind.startswith("cuda")
    return 1 if gpus and "cuda" in (wanted, kind) else 0


def record_rates(results: Path, records: list[dict]) -> Path:
    """Add `records` ({model, profile, device (a kind), images_per_s, ...}) to the store's
    rates file, written whole to a temporary file and renamed into place."""
    path = Path(results) / RATES
    rates = _read_rates(path) + records
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RATES}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"rates": rates}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _read_rates(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        rates = json.loads(path.read_text())["rates"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not a rates file ({type(err).__name__}: {err})") from None
    for rate in rates:
        named = all(isinstance(rate.get(key), str) for key in ("model", "profile", "device"))
        speed = rate.get("images_per_s")
        if not named or not isinstance(speed, int | float) or not speed > 0:
            raise UserError(f"{path}: a rate without model, profile, device or images_per_s > 0")
    return rates


def _base(config: dict) -> dict:
    """A stage's run config (a self-training stage's is its round 1's)."""
    return config.get("parent", config)


def _role(config: dict) -> str:
    return "pretrain" if config["stage"] == "pretrain" else "train"


class StageCosts:
    """Seconds per stage on `device` (None: any device, to order a plan's chains cheapest
    first), from the rates of a results store; math.inf for a stage without a rate."""

    def __init__(self, store: Store, device: str | None = None):
        self.store, self.kind = store, None if device is None else device_kind(device)
        self._here: dict[str, str] = {}  # a device string -> its kind on this host
        self._listings: dict[str, tuple[int, int, int]] = {}
        self.rates: dict[tuple[str, str, str], list[Rate]] = defaultdict(list)
        self._read_stored()
        for rate in _read_rates(store.root / RATES):
            when, code = rate.get("when", ""), rate.get("code", "?")
            batch = f", batch {rate['batch']}" if "batch" in rate else ""
            self.rates[rate["model"], rate["profile"], "train"].append(
                Rate(float(rate["images_per_s"]), rate["device"],
                     f"bench.dev.model_perf, {when[:10]}, code {code}{batch}", False, when)
            )  # fmt: skip

    def _stored_kind(self, versions: dict) -> str | None:
        device = versions.get("device", "")
        if self.kind is None or device == "cpu":
            return device or None
        if versions.get("host") == platform.node():
            if device not in self._here:
                self._here[device] = device_kind(device)
            return self._here[device]
        if device.startswith("cuda"):
            return "cuda"
        return "mps" if device == "mps" else None

    def _read_stored(self) -> None:
        # (model, profile, role, kind) -> (work, seconds, when) of each stored stage
        pooled: dict[tuple[str, str, str, str], list[tuple[float, float, str]]] = defaultdict(list)
        for stage_dir in (self.store.root / RUNS).glob("[!.]*"):
            try:
                status = json.loads((stage_dir / "status.json").read_text())
                config = json.loads((stage_dir / "config.json").read_text())
                versions = json.loads((stage_dir / "versions.json").read_text())
                when = datetime.fromtimestamp(
                    (stage_dir / "status.json").stat().st_mtime, UTC
                ).isoformat(timespec="seconds")
            except (OSError, ValueError):
                continue
            kind = self._stored_kind(versions)
            if status.get("status") != "ok" or not status.get("seconds") or kind is None:
                continue
            if config.get("stage") not in ("round1", "selftrain", "pretrain"):
                continue
            n_pseudo = None
            if config["stage"] == "selftrain":
                try:
                    metrics = json.loads((stage_dir / "metrics.json").read_text())
                    n_pseudo = int(metrics["apds"]["n_pseudo"])
                except (OSError, ValueError, KeyError, TypeError):
                    pass
            try:  # a config of another stage format may lack what the work needs
                base, work = _base(config), self.work(config, n_pseudo)
            except (KeyError, TypeError):
                continue
            key = (base["model"], base["profile"]["name"], _role(config), kind)
            pooled[key].append((work, float(status["seconds"]), when))
        for (model, profile, role, kind), stages in pooled.items():
            work, seconds = sum(s[0] for s in stages), sum(s[1] for s in stages)
            source = f"{len(stages)} stored stage{'s' if len(stages) > 1 else ''}"
            newest = max(s[2] for s in stages)
            self.rates[model, profile, role].append(
                Rate(work / seconds, kind, source, True, newest, role)
            )

    def sizes(self, config: dict) -> DataSizes:
        """The sizes of a stage's dataset (module docstring)."""
        base = _base(config)
        name = base["dataset"]
        if name.startswith("synth-"):
            synth = base["profile"]["synth_sizes"]
            n_train = synth["n_train"]
            pool = min(synth["n_unlabeled"], n_train)
            return DataSizes(n_train, synth["n_val"], synth["n_test"], pool)
        train, val, test = self._real(name)
        if base.get("unlabeled"):
            return DataSizes(train, val, test, train)
        others = sum(self._real(other)[0] for other in OFFICIAL if other != name)
        return DataSizes(train, val, test, min(train, others))

    def _real(self, name: str) -> tuple[int, int, int]:
        """(train, val, test) of a real dataset: its newest cached listing, else official."""
        if name not in self._listings:
            listings = sorted(
                (self.store.root / "cache" / "real").glob(f"{name}-*.npz"),
                key=lambda path: path.stat().st_mtime,
            )
            self._listings[name] = OFFICIAL[name]
            if listings:
                try:
                    with np.load(listings[-1], allow_pickle=False) as npz:
                        self._listings[name] = tuple(
                            len(npz[f"{split}_scores"]) for split in ("train", "val", "test")
                        )
                except (OSError, ValueError, KeyError, EOFError):
                    pass  # an unreadable listing: the official sizes
        return self._listings[name]

    def work(self, config: dict, n_pseudo: int | None = None) -> float:
        """A stage's work in training images (module docstring); `n_pseudo` of a stored
        self-training stage, else the whole pool."""
        base, kind = _base(config), config["stage"]
        sizes = self.sizes(config)
        model_config, profile = base["model_config"], base["profile"]
        passes = model_config.get("procedure", {}).get("inner_steps", 1)
        if kind == "round1":
            epochs = model_config.get("recipe", {}).get("epochs", profile["epochs"])
            trained, evaluated = epochs * sizes.train, epochs * sizes.val + sizes.test
        elif kind == "selftrain":
            epochs = profile["st_epochs"]
            pseudo = sizes.pool if n_pseudo is None else n_pseudo
            search = max(1, round(config["apds"]["apds_val_fraction"] * sizes.val))
            trained = epochs * (sizes.train + pseudo)
            evaluated = search + sizes.pool + epochs * sizes.val + sizes.test
        elif kind == "pretrain":
            epochs, passes = model_config["pretrain"]["epochs"], 1
            trained, evaluated = epochs * sizes.train, epochs * sizes.val
        else:  # evaluate
            trained, evaluated = 0, sizes.test
        return passes * trained + EVAL_COST * evaluated

    def rate(self, stage: Stage) -> Rate | None:
        """The rate a stage is estimated at (module docstring), or None."""
        base = _base(stage.config)
        model, profile = base["model"], base["profile"]["name"]
        for role in dict.fromkeys((_role(stage.config), "train")):
            ranked = [
                (_matches(self.kind, rate.kind), rate.stored, rate.when, rate)
                for rate in self.rates[model, profile, role]
            ]
            ranked = [entry for entry in ranked if entry[0]]
            if ranked:
                return max(ranked, key=lambda entry: entry[:3])[-1]
        return None

    def __call__(self, stage: Stage) -> float:
        rate = self.rate(stage)
        return math.inf if rate is None else self.work(stage.config) / rate.images_per_s


def stages_at_once(device: str, kind: str, jobs: int | None, backend: str) -> tuple[int, str]:
    """How many stages the runner runs at once, and why (module docstring)."""
    from bench.run.runner import default_jobs

    gpu = kind != "cpu"
    if jobs is not None:
        if gpu and jobs > 1 and backend == "ray":
            return jobs, "--jobs, one GPU each on the Ray cluster: fewer GPUs, fewer at once"
        if gpu and jobs > 1:
            return jobs, "--jobs on one GPU: stages sharing it run slower than alone, so longer"
        return jobs, "--jobs"
    n = default_jobs(device)
    if not gpu:
        return n, "one per CPU core, one thread each"
    why = "one at a time on the GPU" if n == 1 else "one per GPU"
    if backend == "ray":
        why += "; give --jobs N for the Ray cluster's N GPUs"
    return n, why


@dataclass(frozen=True)
class Estimate:
    kind: str  # the device kind estimated for
    jobs: int  # stages at once
    why: str  # how `jobs` was chosen
    wall_s: float  # of the stages with a rate, `jobs` at once, wave by wave
    total_s: float  # the sum over the stages with a rate
    known: int  # stages with a rate
    unknown: dict[str, list[str]]  # profile -> models without a rate
    n_unknown: int  # stages without a rate
    rates: dict[tuple[str, str, str], Rate | None]  # (model, profile, role) -> its rate

    def describe(self) -> str:
        here = "; no CUDA device here: any GPU's rates" if self.kind == "cuda" else ""
        lines = [f"rates on {self.kind}, training images per second (bench/run/estimate.py){here}:"]
        for (model, profile, role), rate in sorted(self.rates.items()):
            what = f"{model} at {profile}" + (" (pre-training)" if role == "pretrain" else "")
            if rate is None:
                lines.append(f"  {what}: unknown")
                continue
            on = "" if rate.kind == self.kind else f" on {rate.kind}"
            lines.append(f"  {what}: {rate.images_per_s:,.2f} images/s{on}, {rate.source}")
        if self.known:
            n_all = self.known + self.n_unknown
            some = f" for {self.known} of {n_all} stages" if self.unknown else ""
            lines.append(
                f"estimated wall time {_duration(self.wall_s)} with {self.jobs} stage(s) at once "
                f"({self.why}){some}; {_duration(self.total_s)} of stage time in all"
            )
        if self.unknown:
            unknown = {profile: sorted(models) for profile, models in sorted(self.unknown.items())}
            names = "; ".join(f"{', '.join(m)} at profile {p}" for p, m in unknown.items())
            device = self.kind.split(":")[0]  # cpu, cuda, mps
            where = " (on a machine with a GPU)" if self.kind == "cuda" else ""
            commands = " and ".join(
                f"python -m bench.dev.model_perf --models {','.join(models)} --profile {profile} "
                f"--device {device}"
                for profile, models in unknown.items()
            )
            lines.append(
                f"estimated wall time unknown for {self.n_unknown} stage(s) (no rate for {names} "
                f"on {self.kind}): measure with {commands}{where}"
            )
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 120 * 60:
        return f"{seconds / 60:.0f} min"
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 100 else f"{hours:,.0f} h"


def estimate(
    stages: list[Stage], store: Store, device: str, jobs: int | None, backend: str
) -> Estimate:
    """The estimate for `stages` (those still to run) on `device`, as the runner would run them
    (`jobs`: --jobs, None for the runner's default; `backend`: loky or ray)."""
    cost = StageCosts(store, device)
    at_once, why = stages_at_once(device, cost.kind, jobs, backend)
    waves: dict[int, list[float]] = defaultdict(list)
    rates: dict[tuple[str, str, str], Rate | None] = {}
    unknown: dict[str, list[str]] = defaultdict(list)
    n_unknown = 0
    for stage in stages:
        base = _base(stage.config)
        model, profile = base["model"], base["profile"]["name"]
        rate = cost.rate(stage)
        rates[model, profile, _role(stage.config) if rate is None else rate.role] = rate
        if rate is None:
            n_unknown += 1
            if model not in unknown[profile]:
                unknown[profile].append(model)
        else:
            waves[stage.depth].append(cost.work(stage.config) / rate.images_per_s)
    total = sum(sum(wave) for wave in waves.values())
    # a wave takes its share of the total, and at least its longest stage
    wall = sum(max(max(wave), sum(wave) / at_once) for wave in waves.values())
    known = len(stages) - n_unknown
    return Estimate(cost.kind, at_once, why, wall, total, known, dict(unknown), n_unknown, rates)
