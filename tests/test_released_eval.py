"""Released checkpoints evaluate as released: `run_all.py --model M --eval-only --weights M=FILE
--profile paper` on AVA in its official layout gives, image by image, the predictions of the
official forward pass on the same images and weights.

The official computations are rebuilt independently in tests/official/ (plain tensor functions
over the released state dict, written from a reading of the official code: TANet's theme
network coupled over each test batch, EAT's raw head read as the distribution and its interest
points averaged over each batch), with the official test transform (PIL bicubic resize to
224 x 224) and batches in order, the last one partial.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

import run_all
from bench.data.fixtures import write_fixtures
from tests.official import eat as official_eat
from tests.official import tanet as official_tanet

TOLERANCE = 1e-4  # on the scores (1..10), float32 in both


def evaluate(tmp_path: Path, model: str, weights: Path, *extra: str) -> pd.DataFrame:
    """The per-image predictions of one --eval-only run, in the harness's test order."""
    root = tmp_path / "data"
    write_fixtures(root, n_train=6, n_test=10)
    results = tmp_path / "results"
    args = ["--model", model, "--eval-only", "--weights", f"{model}={weights}"]
    args += ["--profile", "paper", "--dataset", "ava", "--data-root", str(root)]
    assert run_all.main([*args, *extra, "--jobs", "1", "--results", str(results)]) == 0
    (stage,) = (results / "runs").glob("[!.]*/predictions.csv")
    return pd.read_csv(stage)


def official_images(tmp_path: Path, ids) -> torch.Tensor:
    images = [official_tanet.official_test_image(tmp_path / "data/AVA/images" / f"{i}.jpg")
              for i in ids]  # fmt: skip
    return torch.stack(images)


@pytest.mark.parametrize("batch", [None, 4])
def test_released_tanet_equals_the_official_forward(tmp_path, capsys, batch):
    state = official_tanet.random_released_state(official_tanet.released_tanet_shapes(), seed=0)
    weights = tmp_path / "SRCC_758_LCC_765.pth"
    torch.save(state, weights)
    extra = [] if batch is None else ["--recipe", f"tanet.eval_batch_size={batch}"]
    ours = evaluate(tmp_path, "tanet", weights, *extra)
    assert "tanet: evaluated as released" in capsys.readouterr().out
    images = official_images(tmp_path, ours["id"])
    with torch.no_grad():  # the official test batches: 48 (one here), or 4, 4, 2
        outputs, scores = official_tanet.official_tanet_eval(state, images, batch or 48)
    assert (ours["pred"] - scores.numpy()).abs().max() < TOLERANCE
    # The coupled theme branch makes batches matter: the two partitions disagree.
    if batch is not None:
        one_batch = official_tanet.official_tanet_eval(state, images, 48)[1]
        assert (one_batch - scores).abs().max() > 10 * TOLERANCE


def test_released_eat_equals_the_official_forward(tmp_path, capsys):
    from baselines import create_model

    torch.manual_seed(0)
    model = create_model("eat", "paper")  # DAT-B with ref_point14, a raw 10-output head
    state = {k: v for k, v in model.state_dict().items()}
    weights = tmp_path / "AVA_AOT_vacc_0.8259_srcc_0.7596_vlcc_0.7710.pth"
    torch.save(state, weights)
    ours = evaluate(tmp_path, "eat", weights)
    assert "eat: evaluated as released" in capsys.readouterr().out
    images = official_images(tmp_path, ours["id"])
    with torch.no_grad():  # batches of 16: one here
        outputs, scores = official_eat.official_eat_eval(state, images, 16)
    raw = ours[[f"output{k}" for k in range(1, 11)]].to_numpy()
    assert abs(raw - outputs.numpy()).max() < TOLERANCE  # the raw head, no softmax
    assert (ours["pred"] - scores.numpy()).abs().max() < TOLERANCE
