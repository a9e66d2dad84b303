"""How long the stages a plan still has to run will take, from the stages already stored.

Every stored stage records the seconds it took (status.json). A stage to run is estimated by
the mean of the stored ok stages of the same model, profile and kind (pretrain, round1,
selftrain, evaluate), else by its profile's stated default per stage. The wall time divides the
total by the number of stages run at once, wave by wave (a self-training round waits for its
round 1), so it is a rough guide: stages of different lengths do not pack perfectly.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from bench.run.dag import Stage
from bench.run.store import RUNS, Store

# Seconds per stage when nothing comparable is stored (one stage per core, this 2-core machine)
DEFAULT_SECONDS = {"smoke": 10.0, "cpu": 120.0, "paper": 3600.0}


def _key(config: dict) -> tuple[str, str, str]:
    """(model, profile, kind) of a stage config (a self-training stage nests its round 1)."""
    base = config.get("parent", config)
    return base["model"], base["profile"]["name"], config["stage"]


class StageCosts:
    """Estimated seconds per stage, from the ok stages of a results store."""

    def __init__(self, store: Store):
        self.seconds: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        for stage_dir in (store.root / RUNS).glob("[!.]*"):
            try:
                status = json.loads((stage_dir / "status.json").read_text())
                config = json.loads((stage_dir / "config.json").read_text())
            except (OSError, ValueError):
                continue
            if status.get("status") == "ok" and "seconds" in status:
                self.seconds[_key(config)].append(float(status["seconds"]))

    def known(self, stage: Stage) -> bool:
        """Whether a stored stage of the same model, profile and kind exists."""
        return _key(stage.config) in self.seconds

    def __call__(self, stage: Stage) -> float:
        key = _key(stage.config)
        if key in self.seconds:
            return sum(self.seconds[key]) / len(self.seconds[key])
        return DEFAULT_SECONDS.get(key[1], DEFAULT_SECONDS["cpu"])


@dataclass(frozen=True)
class Estimate:
    total_s: float  # the sum over the stages to run
    wall_s: float  # over `jobs` stages at once, wave by wave
    from_store: int  # stages estimated from stored ones
    defaulted: int  # stages estimated by the profile's default

    def describe(self, jobs: int) -> str:
        return (
            f"estimated wall time {_duration(self.wall_s)} with {jobs} stage(s) at once "
            f"({_duration(self.total_s)} in all; {self.from_store} estimated from stored "
            f"stages of the same model, profile and kind, {self.defaulted} at the default "
            "seconds per stage of their profile, bench/run/estimate.py)"
        )


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def estimate(stages: list[Stage], store: Store, jobs: int) -> Estimate:
    """The estimate for `stages` (those still to run), run `jobs` at a time."""
    cost = StageCosts(store)
    waves: dict[int, list[float]] = defaultdict(list)
    for stage in stages:
        waves[stage.depth].append(cost(stage))
    from_store = sum(1 for stage in stages if cost.known(stage))
    total = sum(sum(wave) for wave in waves.values())
    # a wave takes its share of the total, and at least its longest stage
    wall = sum(max(max(wave), sum(wave) / jobs) for wave in waves.values())
    return Estimate(total, wall, from_store, len(stages) - from_store)
