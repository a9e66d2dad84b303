"""EMD / MSE losses and the paper's metrics, against hand-computed values."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from bench.train.losses import batch_loss, emd_per_sample, per_sample_loss
from bench.train.metrics import evaluate, group_masks


def test_emd_r2_per_sample_by_hand():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    # CDF gaps: (1, 0) -> sqrt(1/2); (0, 0) -> 0
    torch.testing.assert_close(emd_per_sample(p, q), torch.tensor([math.sqrt(0.5), 0.0]))


def test_batch_loss_forms_differ_as_documented():
    logits = torch.log(torch.tensor([[0.999, 0.001], [0.5, 0.5]]))
    target = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    gaps = torch.tensor([[0.999, 0.0], [0.0, 0.0]])
    per_sample = (gaps.pow(2).mean(-1).sqrt()).mean()
    batch_rms = gaps.pow(2).mean().sqrt()
    assert batch_loss(logits, target, "per_sample").item() == pytest.approx(per_sample.item(), 1e-4)
    assert batch_loss(logits, target, "batch_rms").item() == pytest.approx(batch_rms.item(), 1e-4)


def test_scalar_loss_is_squared_error_of_expected_score_over_10():
    logits = torch.full((1, 10), -1e4)
    logits[0, 6] = 0.0  # all mass on rating 7
    assert per_sample_loss(logits, torch.tensor([5.0])).item() == pytest.approx(0.04)


def test_groups_cover_every_sample_once_with_ties_on_cut_points():
    gt = np.array([1.0, 2, 2, 2, 3, 4, 5, 6, 6, 6, 7, 9])
    masks = group_masks(gt)
    total = masks["l"].astype(int) + masks["m"] + masks["h"]
    assert (total == 1).all()
    low_cut, high_cut = np.percentile(gt, [20, 80])
    assert (gt[masks["l"]] <= low_cut).all() and (gt[masks["h"]] >= high_cut).all()
    assert masks["l"][0] and masks["h"][-1]  # min and max are scored (the official code drops them)


def test_evaluate_by_hand():
    gt = np.array([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    pred = gt.copy()
    pred[0] += 1.0  # low group: 1, 2 -> errors 1, 0
    pred[5] += 0.5  # medium: 3..8 -> errors 0, 0, 0, .5, 0, 0
    pred[9] -= 2.0  # high: 9, 10 -> errors 0, 2
    m = evaluate(pred, gt)
    assert m["mae_l"] == pytest.approx(0.5)
    assert m["mae_m"] == pytest.approx(0.5 / 6)
    assert m["mae_h"] == pytest.approx(1.0)
    assert m["plcc"] == pytest.approx(stats.pearsonr(pred, gt)[0])
    assert m["srcc"] == pytest.approx(stats.spearmanr(pred, gt)[0])
    # binary at 5: gt > 5 for 6..10; pred 5.5 stays > 5 -> all agree except none
    assert m["acc"] == pytest.approx(1.0)
    m = evaluate(np.full(10, 6.0), gt)
    assert math.isnan(m["plcc"]) and m["acc"] == pytest.approx(0.5)


@pytest.mark.parametrize("form", ["per_sample", "batch_rms"])
def test_emd_gradient_is_finite_where_prediction_equals_target(form):
    logits = torch.tensor([[0.3, -1.0, 2.0, 0.0, 0.5, 0.1, -0.2, 0.0, 1.0, 0.4]] * 2)
    logits.requires_grad_()
    target = torch.softmax(logits.detach(), -1)  # a model's own pseudo-label
    target[1] = torch.roll(target[1], 1)  # the second row differs
    loss = batch_loss(logits, target, form)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    if form == "per_sample":
        assert torch.equal(logits.grad[0], torch.zeros(10))  # the subgradient at 0
        assert logits.grad[1].abs().sum() > 0
