"""The rehearsal of the paper protocol (bench/run/rehearsal.py): its plan runs every model,
method and stage kind at paper size, on fixture data, capped; it says so everywhere. The
rehearsal itself runs in CI (`make rehearse`); these tests check its plan and its settings."""

from __future__ import annotations

import json

import pytest
import torch

import run_all
from baselines import list_models
from bench.profiles import get_profile
from bench.train.settings import train_settings


def test_the_plan_runs_every_model_and_stage_kind_at_paper_size(tmp_path, capsys):
    assert run_all.main(["--table", "all", "--profile", "paper", "--rehearse", "--dry-run",
                         "--results", str(tmp_path)]) == 0  # fmt: skip
    stages = [line.split() for line in capsys.readouterr().out.splitlines() if "  to run  " in line]
    assert {kind for _, kind, *_ in stages} == {"pretrain", "round1", "selftrain"}
    stored = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/config.json")]
    assert not stored  # a dry run stores nothing
    # every model of the registry, at its paper config, with the rehearsal's starts
    from bench.run.grid import Request
    from bench.run.rehearsal import rehearsal

    request = rehearsal(Request(profile="paper"), tmp_path)
    assert request.profile == "rehearsal" and "REHEARSAL" in request.note
    assert request.variants["tanet"] == ("harness_theme",)
    assert all(request.variants[m] == ("scratch",) for m in list_models() if m != "tanet")
    assert (tmp_path / "cache" / "fixtures" / "AVA" / "AVA.txt").is_file()


def test_the_rehearsal_profile_runs_the_paper_configs_capped():
    rehearsal, paper = get_profile("rehearsal"), get_profile("paper")
    assert rehearsal.models == "paper" and paper.models == "paper"
    from baselines.registry import resolve_config

    config, _ = resolve_config("swinv2", rehearsal.models, "ava")
    settings = train_settings(config, rehearsal, torch.device("cpu"))
    assert (settings.batch_size, settings.max_steps, settings.img_size) == (4, 1, 256)
    assert settings.lr == 1e-5 and settings.emd == "batch_rms"  # the paper recipe
    assert train_settings(config, paper, torch.device("cpu")).max_steps is None


def test_a_rehearsal_of_another_profile_is_refused(tmp_path, capsys):
    code = run_all.main(["--table", "4", "--rehearse", "--dry-run", "--results", str(tmp_path)])
    assert code == 2
    assert "--rehearse rehearses the paper protocol" in capsys.readouterr().err


class Tiny(torch.nn.Module):
    """The smallest model with the surface: a mean colour -> 10 logits."""

    feature_dim, needs = 3, ()

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 10)

    def forward_features(self, x):
        return x.mean((2, 3))

    def forward_head(self, z):
        return self.head(z)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


@pytest.mark.parametrize("steps", [1, 3])
def test_a_capped_round_stops_after_its_updates(steps):
    from dataclasses import replace

    import numpy as np

    from bench.data.types import Split
    from bench.train.loop import Progress, Round, train_round
    from bench.train.methods import MethodOptions

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (20, 8, 8, 3), dtype=np.uint8)
    scores = np.linspace(2, 8, 20).astype(np.float32)
    split = Split(images, scores, None, [str(i) for i in range(20)])
    settings = train_settings({"img_size": 8}, get_profile("smoke"), torch.device("cpu"))
    settings = replace(settings, batch_size=2, epochs=5, max_steps=steps)
    model = Tiny()
    result = train_round(model, Round(split, split, MethodOptions(), settings, 0), Progress(print))
    # 10 batches an epoch: the first epoch reaches the cap, is validated, and ends the round
    assert len(result.curve) == 1 and result.best_epoch == 1


def test_the_evaluate_stage_evaluates_the_model_it_names(tmp_path):
    from bench.run.grid import Request
    from bench.run.rehearsal import rehearsal, stored_model
    from tables.make import rows_of
    from tables.specs import single_run

    request = stored_model(rehearsal(Request(profile="paper"), tmp_path), tmp_path)
    (row,) = rows_of(single_run("tanet", []), request)
    assert row.model == "tanet" and request.eval_only  # not the ablations' substitute
    assert set(request.weights["tanet"]) == {"model"}
