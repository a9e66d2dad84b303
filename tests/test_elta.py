"""ELTA's equations checked against numbers computed by hand on small batches."""

import math

import numpy as np
import pytest
import torch

from elta import apds, flsa, tfa


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---- TFA: eqs. 1-4 --------------------------------------------------------------------------

SCORES = torch.tensor([4.0, 5.0, 6.0, 9.0])  # mean 6: deviations 2, 1, 0, 3


def test_first_member_follows_eq2():
    # tau1 = 1: P(i) = e^{d_i} / sum_k e^{d_k}, d = (2, 1, 0, 3)
    e = [math.exp(d) for d in (2, 1, 0, 3)]
    expected = np.array(e) / sum(e)  # 0.2369, 0.0871, 0.0321, 0.6439
    g = _gen()
    draws = [int(tfa.sample_pairs(SCORES, 1, 1.0, 1.0, g)[0]) for _ in range(6000)]
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, expected, atol=0.02)


def test_partner_follows_eq3():
    # Given i = 3 (s = 9), gaps to the others are 5, 4, 3; tau2 = 1: logits 1/5, 1/4, 1/3.
    logits = [1 / 5, 1 / 4, 1 / 3]
    expected = np.exp(logits) / np.exp(logits).sum()
    scores = torch.tensor([4.0, 5.0, 6.0, 9.0])
    g = _gen(1)
    partners = []
    while len(partners) < 4000:
        i, j, _ = tfa.sample_pairs(scores, 4, 1.0, 1.0, g)  # n_pairs = B: every i once
        partners.append(int(j[i == 3]))
    freq = np.bincount(partners, minlength=4)[:3] / len(partners)
    np.testing.assert_allclose(freq, expected, atol=0.025)
    assert 3 not in partners


def test_lambda_is_eq4():
    g = _gen(2)
    i, j, lam = tfa.sample_pairs(SCORES, 4, 0.5, 2.0, g)
    dev = (SCORES - SCORES.mean()).abs()
    for a, b, got in zip(i.tolist(), j.tolist(), lam.tolist(), strict=True):
        num = math.exp(dev[a].item() / 0.5)
        assert got == pytest.approx(num / (num + math.exp(dev[b].item() / 0.5)), rel=1e-5)


def test_first_members_drawn_without_replacement():
    i, j, _ = tfa.sample_pairs(torch.randn(16), 16, 0.2, 4.0, _gen(3))
    assert sorted(i.tolist()) == list(range(16))
    assert (i != j).all()


@pytest.mark.parametrize("tau1,tau2", [(0.2, 4.0), (1e-3, 1e4), (50.0, 1e-3), (0.01, 1e6)])
def test_finite_for_any_tau_and_ties(tau1, tau2):
    scores = torch.tensor([5.0, 5.0, 5.0, 9.0, 1.0, 5.0])
    i, j, lam = tfa.sample_pairs(scores, 6, tau1, tau2, _gen(4))
    assert torch.isfinite(lam).all() and (i != j).all()
    i, j, lam = tfa.sample_pairs(torch.full((5,), 5.0), 3, tau1, tau2, _gen(5))
    assert torch.allclose(lam, torch.full((3,), 0.5))


def test_ties_pick_the_tied_partner_for_large_tau2():
    # The limit of eq. 3 for a zero gap: all mass on the partner that ties with i.
    scores = torch.tensor([5.0, 5.0, 9.0, 1.0])
    for seed in range(20):
        i, j, _ = tfa.sample_pairs(scores, 4, 0.2, 100.0, _gen(seed))
        assert int(j[i == 0]) == 1 and int(j[i == 1]) == 0


def test_invalid_tau_rejected():
    with pytest.raises(ValueError, match="tau"):
        tfa.sample_pairs(SCORES, 1, 0.0, 4.0)
    with pytest.raises(ValueError, match="tau"):
        tfa.mix(torch.zeros(4, 2), SCORES, SCORES, 1, 0.2, -1.0)


def test_mix_appends_eq1_rows_for_distributions_and_scalars():
    g = _gen(6)
    feats = torch.randn(6, 3)
    dists = torch.softmax(torch.randn(6, 10), -1)
    scores = torch.tensor([2.0, 5.0, 5.5, 6.0, 8.5, 5.0])
    state = g.get_state()
    out_f, out_t = tfa.mix(feats, dists, scores, 4, 0.2, 4.0, g)
    g.set_state(state)
    i, j, lam = tfa.sample_pairs(scores, 4, 0.2, 4.0, g)
    assert out_f.shape == (10, 3) and out_t.shape == (10, 10)
    assert torch.equal(out_f[:6], feats) and torch.equal(out_t[:6], dists)
    expected = lam[:, None] * feats[i] + (1 - lam[:, None]) * feats[j]
    torch.testing.assert_close(out_f[6:], expected)
    torch.testing.assert_close(out_t.sum(-1), torch.ones(10))
    _, out_s = tfa.mix(feats, scores, scores, 4, 0.2, 4.0, _gen(6))
    assert out_s.shape == (10,)
    assert ((out_s[6:] >= 2.0) & (out_s[6:] <= 8.5)).all()


def test_mix_two_samples_by_hand():
    # B = 2 forces j = the other sample; equal deviations (3, 3) give lam = 0.5.
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out_f, out_t = tfa.mix(feats, torch.tensor([2.0, 8.0]), torch.tensor([2.0, 8.0]), 1, 0.2, 4.0)
    torch.testing.assert_close(out_f[2], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(out_t[2], torch.tensor(5.0))


def test_mix_works_on_images_pixel_level():
    images = torch.rand(4, 3, 8, 8)
    out, _ = tfa.mix(images, SCORES, SCORES, 2, 0.2, 4.0, _gen(7))
    assert out.shape == (6, 3, 8, 8)


# ---- FLSA: eqs. 5-6 -------------------------------------------------------------------------


def test_alignment_loss_by_hand():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    scores = torch.tensor([1.0, 2.0, 3.0])
    # M^f: cos = [[1, 0, .7071], [0, 1, .7071], [.7071, .7071, 1]]
    # M^l: 1 - |d| / 2 = [[1, .5, 0], [.5, 1, .5], [0, .5, 1]]
    r = 1 / math.sqrt(2)
    expected = 2 * (0.5**2 + r**2 + (r - 0.5) ** 2) / 9
    assert flsa.alignment_loss(feats, scores).item() == pytest.approx(expected, rel=1e-5)


def test_alignment_loss_equal_scores_is_finite_and_label_similarity_one():
    feats = torch.randn(5, 4, requires_grad=True)
    scores = torch.full((5,), 6.0)
    torch.testing.assert_close(flsa.label_similarity(scores), torch.ones(5, 5))
    loss = flsa.alignment_loss(feats, scores)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(feats.grad).all()


# ---- APDS: eqs. 8-9 -------------------------------------------------------------------------


def test_sharpen_eq8_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    pred = torch.tensor([2.0, 3.0])  # mean 2.5, deviations 0.5
    beta = math.log(2) / 0.5  # tau = exp(-beta * 0.5) = 0.5: logits doubled
    out = apds.sharpen(logits, pred, beta)
    e = [math.exp(4), math.exp(2), 1.0]
    torch.testing.assert_close(out[0], torch.tensor(e) / sum(e))
    e = [1.0, math.exp(2), 1.0]
    torch.testing.assert_close(out[1], torch.tensor(e) / sum(e))
    assert torch.equal(apds.sharpen(logits, pred, 0.0), torch.softmax(logits, -1))
    batched = apds.sharpen(logits, pred, torch.tensor([0.0, beta]))
    assert batched.shape == (2, 2, 3)
    torch.testing.assert_close(batched[1], out)


def test_sharpening_favours_the_tails():
    logits = torch.zeros(3, 10)
    logits[:, 4] = 1.0
    pred = torch.tensor([5.0, 5.5, 9.0])  # mean 6.5: deviations 1.5, 1.0, 2.5
    conf = apds.sharpen(logits, pred, 1.0).amax(-1)
    assert conf[2] > conf[0] > conf[1]


def test_select_threshold_is_inclusive():
    logits = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    pred = torch.tensor([1.5, 1.5])  # no deviation: plain softmax, top-1 = 0.5 and ~1
    assert apds.select(logits, pred, 1.0, 0.5).tolist() == [True, True]
    assert apds.select(logits, pred, 1.0, 0.6).tolist() == [False, True]


def test_grid_search_by_hand():
    # Three candidates with no deviation from the mean (so beta has no effect):
    # confidences 0.5, 0.9, 0.99 (two bins), errors 2.0, 1.0, 0.0.
    conf = torch.tensor([0.5, 0.9, 0.99])
    logits = torch.stack([torch.zeros(3), torch.log(conf / (1 - conf))], -1)
    pred = torch.full((3,), 5.0)
    true = torch.tensor([7.0, 6.0, 5.0])
    res = apds.grid_search(logits, pred, true, [1.0, 2.0], [0.4, 0.8, 0.95], min_selected=2)
    # t = 0.4: mean(2, 1, 0) = 1; t = 0.8: mean(1, 0) = 0.5; t = 0.95: one pick (< 2) invalid.
    assert (res.beta, res.threshold, res.count) == (1.0, 0.8, 2)
    assert res.mae == pytest.approx(0.5)
    assert len(res.grid) == 6 and res.grid["mae"].isna().sum() == 2
    with pytest.raises(ValueError, match="at least 4"):
        apds.grid_search(logits, pred, true, [1.0], [0.4], min_selected=4)


def test_grid_search_matches_a_loop_over_the_grid():
    g = _gen(8)
    logits = torch.randn(200, 10, generator=g) * 2
    pred = apds.expected_score(torch.softmax(logits, -1))
    true = pred + torch.randn(200, generator=g) * (pred - pred.mean()).abs()
    betas, ts = [0.5, 1.0, 1.5, 2.0], [0.3, 0.5, 0.7, 0.9]
    res = apds.grid_search(logits, pred, true, betas, ts, min_selected=5)
    best = (math.inf, None)
    for b in betas:
        for t in ts:
            mask = apds.select(logits, pred, b, t)
            if mask.sum() >= 5:
                mae = (pred[mask] - true[mask]).abs().mean().item()
                best = min(best, (mae, (b, t)), key=lambda x: x[0])
    assert (res.beta, res.threshold) == best[1]
    assert res.mae == pytest.approx(best[0], rel=1e-5)


def test_expected_score():
    probs = torch.tensor([[0.0] * 9 + [1.0], [0.5] + [0.0] * 8 + [0.5]])
    torch.testing.assert_close(apds.expected_score(probs), torch.tensor([10.0, 5.5]))
