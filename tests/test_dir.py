"""LDS, FDS and RankSim (baselines/dir) checked against numbers worked out by hand."""

import math

import numpy as np
import pytest
import torch

from baselines.dir import check_settings, fds, lds, ranksim

# ---- LDS windows -------------------------------------------------------------------------------


def test_gaussian_window_ks5_sigma2_is_scipys_reflected_gaussian():
    # gaussian_filter1d(delta at 2 of 5 points, sigma=2): truncated at 4 sigma (|d| <= 8),
    # weights w(d) = exp(-d^2 / 8) / Z, and the "reflect" boundary repeats the delta at
    # -3, 7, -8, 12 (period 10), so out[i] = sum over images p of w(i - p) / Z:
    #   out[2] = w(0) + w(5) + w(-5)                 = 1 + 2 e^{-25/8}
    #   out[1] = w(-1) + w(4) + w(-6)                = e^{-1/8} + e^{-2} + e^{-36/8}
    #   out[0] = w(-2) + w(3) + w(-7) + w(8)         = e^{-1/2} + e^{-9/8} + e^{-49/8} + e^{-8}
    e = math.exp
    peak = 1 + 2 * e(-25 / 8)
    one = (e(-1 / 8) + e(-2) + e(-36 / 8)) / peak
    two = (e(-1 / 2) + e(-9 / 8) + e(-49 / 8) + e(-8)) / peak
    assert one == pytest.approx(0.945828, abs=1e-6) and two == pytest.approx(0.858285, abs=1e-6)
    np.testing.assert_allclose(
        lds.kernel_window("gaussian", 5, 2.0), [two, one, 1.0, one, two], rtol=1e-12
    )


def test_triang_and_laplace_windows():
    np.testing.assert_allclose(lds.kernel_window("triang", 5, 2.0), [1 / 3, 2 / 3, 1, 2 / 3, 1 / 3])
    e = math.exp
    np.testing.assert_allclose(
        lds.kernel_window("laplace", 5, 2.0), [e(-1), e(-0.5), 1, e(-0.5), e(-1)], rtol=1e-12
    )
    np.testing.assert_array_equal(lds.kernel_window("gaussian", 1, 2.0), [1.0])


# ---- LDS weights -------------------------------------------------------------------------------

EDGES4 = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
# bins [0,1) [1,2) [2,3) [3,4]: counts 1, 4, 1, 2 (4.0 is on the closed last edge)
SCORES8 = np.array([0.5, 1.0, 1.2, 1.5, 1.9, 2.5, 3.0, 4.0])


def test_lds_sqrt_inv_weights_by_hand():
    # sqrt counts c = [1, 2, 1, sqrt2]; triang ks=3 window [0.5, 1, 0.5], zero outside:
    # smoothed = [1 + 1, 0.5 + 2 + 0.5, 1 + 1 + sqrt2/2, 0.5 + sqrt2] = [2, 3, 2.7071, 1.9142]
    r2 = math.sqrt(2)
    smoothed = np.array([2.0, 3.0, 2 + r2 / 2, 0.5 + r2])
    np.testing.assert_allclose(
        lds.smoothed_counts(SCORES8, EDGES4, "sqrt_inv", "triang", 3), smoothed
    )
    inverse = 1 / smoothed  # [0.5, 0.3333, 0.3694, 0.5224]
    per_sample = inverse[[0, 1, 1, 1, 1, 2, 3, 3]]  # sum 3.24755
    expected = per_sample * 8 / per_sample.sum()  # scale 2.46340
    np.testing.assert_allclose(
        expected, [1.23170, 0.82113, 0.82113, 0.82113, 0.82113, 0.90997, 1.28690, 1.28690],
        atol=1e-5,
    )  # fmt: skip
    got = lds.sample_weights(SCORES8, EDGES4, "sqrt_inv", kernel="triang", ks=3)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got.mean() == pytest.approx(1.0)


def test_lds_inverse_clips_counts_to_5():
    # counts [1, 4, 1, 2] all clip to 5: equal smoothed counts, equal weights
    np.testing.assert_allclose(lds.sample_weights(SCORES8, EDGES4, "inverse", ks=1), np.ones(8))
    # without smoothing sqrt_inv is 1/sqrt(count), scaled to mean 1
    raw = 1 / np.sqrt([1, 4, 4, 4, 4, 1, 2, 2])
    np.testing.assert_allclose(
        lds.sample_weights(SCORES8, EDGES4, "sqrt_inv", ks=1), raw * 8 / raw.sum()
    )


def test_bin_weights_table_lookup_equals_sample_weights_and_is_finite():
    rng = np.random.default_rng(0)
    scores = np.clip(rng.normal(5.4, 0.7, 500), 0, 10)
    table = lds.bin_weights(scores, lds.SCORE_BIN_EDGES, "sqrt_inv")
    assert table.shape == (lds.N_SCORE_BINS,) and np.isfinite(table).all()
    weights = lds.sample_weights(scores, lds.SCORE_BIN_EDGES, "sqrt_inv")
    edges = torch.as_tensor(lds.SCORE_BIN_EDGES)
    looked_up = torch.as_tensor(table)[
        lds.bin_index(torch.tensor(scores, dtype=torch.float32), edges)
    ]
    np.testing.assert_allclose(looked_up.numpy(), weights, rtol=1e-12)
    # bins out of every sample's reach (0..~2.5, ~8.5..10) get the largest weight, not inf
    assert table[0] == table.max()


def test_score_bins_agree_in_float32_and_float64():
    # multiples of 0.1, as exact float64 and as float32 expected scores of vote histograms
    assert lds.bin_indices(np.array([0.0, 0.05, 5.0, 9.95, 10.0, 12.0, -1.0])).tolist() == [
        0, 0, 50, 99, 99, 99, 0,
    ]  # fmt: skip
    votes = torch.zeros(10, 10)
    votes[torch.arange(10), torch.arange(10)] = 47.0  # every vote on rating k: mean k
    votes[:, 5] += 6.0  # ... plus 6 votes of 6: (47 k + 36) / 53
    probs = votes / votes.sum(1, keepdim=True)
    mean32 = (probs * torch.arange(1, 11)).sum(1)
    mean64 = (47 * np.arange(1, 11) + 36) / 53
    edges = torch.as_tensor(lds.SCORE_BIN_EDGES)
    np.testing.assert_array_equal(lds.bin_index(mean32, edges).numpy(), lds.bin_indices(mean64))
    assert lds.bin_indices(np.array([318 / 53])) == 60  # 6.0 exactly
    on_edges = torch.arange(101, dtype=torch.float32) / 10
    assert lds.bin_index(on_edges, edges).tolist() == list(range(100)) + [99]
    assert lds.bin_index(on_edges.view(1, -1, 1), edges).shape == (1, 101, 1)  # any shape


# ---- FDS ---------------------------------------------------------------------------------------

# 6 two-dimensional features over 3 buckets
FEATS = torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, 0.0], [2.0, 4.0], [4.0, 1.0], [4.0, 3.0]])
BUCKETS = torch.tensor([0, 0, 1, 1, 2, 2])
MEAN = torch.tensor([[2.0, 3.0], [1.0, 2.0], [4.0, 2.0]])
VAR = torch.tensor([[2.0, 2.0], [2.0, 8.0], [0.0, 2.0]])  # unbiased, two samples each


def _smooth3(s):
    # triang ks=3 normalised: [1/4, 1/2, 1/4]; reflect padding: s_-1 = s_1, s_3 = s_1
    return torch.stack(
        [0.5 * s[0] + 0.5 * s[1], 0.25 * s[0] + 0.5 * s[1] + 0.25 * s[2], 0.5 * s[1] + 0.5 * s[2]]
    )


def _fds(**kw):
    return fds.FDS(2, 3, kernel="triang", ks=3, **kw)


def test_fds_first_update_replaces_and_smooths_by_hand():
    m = _fds()
    m.update(FEATS, BUCKETS, epoch=0)
    torch.testing.assert_close(m.running_mean, MEAN)
    torch.testing.assert_close(m.running_var, VAR)
    torch.testing.assert_close(m.smoothed_mean, torch.tensor([[1.5, 2.5], [2.0, 2.25], [2.5, 2.0]]))
    torch.testing.assert_close(m.smoothed_var, torch.tensor([[2.0, 5.0], [1.5, 5.0], [1.0, 5.0]]))
    torch.testing.assert_close(m.smoothed_mean, _smooth3(MEAN))


def test_fds_momentum_update_by_hand():
    m = _fds(momentum=0.9)
    m.update(FEATS, BUCKETS, epoch=0)
    m.update(2 * FEATS, BUCKETS, epoch=1)  # epoch stats: 2 * mean, 4 * var
    torch.testing.assert_close(m.running_mean, 0.9 * MEAN + 0.1 * 2 * MEAN)  # 1.1 * mean
    torch.testing.assert_close(m.running_var, 0.9 * VAR + 0.1 * 4 * VAR)  # 1.3 * var
    torch.testing.assert_close(m.smoothed_mean, _smooth3(1.1 * MEAN))
    torch.testing.assert_close(m.smoothed_var, _smooth3(1.3 * VAR))


def test_fds_calibration_by_hand():
    m = _fds()
    m.update(FEATS, BUCKETS, epoch=0)
    m.train()
    out = m.smooth(FEATS, BUCKETS, epoch=1)
    # v~/v: bucket 0 (1, 2.5); bucket 1 (0.75, 0.625); bucket 2 (v = 0 -> unchanged, 2.5)
    r = math.sqrt
    expected = torch.tensor(
        [
            [(1 - 2) * 1 + 1.5, (2 - 3) * r(2.5) + 2.5],
            [(3 - 2) * 1 + 1.5, (4 - 3) * r(2.5) + 2.5],
            [(0 - 1) * r(0.75) + 2.0, (0 - 2) * r(0.625) + 2.25],
            [(2 - 1) * r(0.75) + 2.0, (4 - 2) * r(0.625) + 2.25],
            [4.0, (1 - 2) * r(2.5) + 2.0],
            [4.0, (3 - 2) * r(2.5) + 2.0],
        ]
    )
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(FEATS[0], torch.tensor([1.0, 2.0]))  # input untouched


def test_fds_clamps_the_variance_ratio():
    x = torch.tensor([[3.0, 3.0]])
    zero, one = torch.zeros(1, 2), torch.ones(1, 2)
    # ratio 100 -> 10, ratio 0.001 -> 0.1 (default clip)
    out = fds.calibrate(x, zero, one, zero, torch.tensor([[100.0, 0.001]]))
    torch.testing.assert_close(out, torch.tensor([[3 * math.sqrt(10), 3 * math.sqrt(0.1)]]))
    out = fds.calibrate(x, zero, one, zero, torch.tensor([[100.0, 0.001]]), clip=(0.5, 2.0))
    torch.testing.assert_close(out, torch.tensor([[3 * math.sqrt(2), 3 * math.sqrt(0.5)]]))


def test_fds_is_identity_before_start_smooth_and_in_eval():
    m = _fds(start_smooth=2)
    m.update(FEATS, BUCKETS, epoch=0)
    m.train()
    assert m.smooth(FEATS, BUCKETS, epoch=1) is FEATS
    assert not torch.equal(m.smooth(FEATS, BUCKETS, epoch=2), FEATS)
    m.eval()
    assert m.smooth(FEATS, BUCKETS, epoch=5) is FEATS


def test_fds_update_waits_for_start_update():
    m = _fds(start_update=1)
    m.update(FEATS, BUCKETS, epoch=0)
    torch.testing.assert_close(m.running_mean, torch.zeros(3, 2))
    m.update(FEATS, BUCKETS, epoch=1)
    torch.testing.assert_close(m.running_mean, MEAN)


def test_fds_empty_bucket_takes_no_part_in_smoothing():
    m = _fds()
    keep = BUCKETS != 1
    m.update(FEATS[keep], BUCKETS[keep], epoch=0)  # bucket 1 never seen
    assert m.seen.tolist() == [True, False, True]
    # buckets 0 and 2 only reach each other through bucket 1: they keep their own statistics
    # (the official AgeDB code would give 0.5 * m_0 + 0.5 * 0 for bucket 0)
    torch.testing.assert_close(m.smoothed_mean[[0, 2]], MEAN[[0, 2]])
    torch.testing.assert_close(m.smoothed_var[[0, 2]], VAR[[0, 2]])
    torch.testing.assert_close(m.running_mean[1], torch.zeros(2))  # unseen: 0 / 1
    m.train()
    x = torch.tensor([[7.0, -3.0]])
    torch.testing.assert_close(m.smooth(x, torch.tensor([1]), epoch=1), x)  # identity there


def test_fds_bucket_empty_in_a_later_update_keeps_its_statistics():
    m = _fds()
    m.update(FEATS, BUCKETS, epoch=0)
    keep = BUCKETS != 1
    m.update(2 * FEATS[keep], BUCKETS[keep], epoch=1)
    torch.testing.assert_close(m.running_mean[1], MEAN[1])  # no momentum towards 0
    torch.testing.assert_close(m.running_mean[[0, 2]], 1.1 * MEAN[[0, 2]])
    torch.testing.assert_close(m.smoothed_mean, _smooth3(m.running_mean))  # still seen


def test_fds_single_sample_bucket_has_zero_variance_and_is_not_calibrated():
    m = _fds()
    m.update(FEATS[:5], BUCKETS[:5], epoch=0)  # bucket 2 has one sample
    torch.testing.assert_close(m.running_var[2], torch.zeros(2))
    m.train()
    x = torch.tensor([[9.0, 9.0]])
    torch.testing.assert_close(m.smooth(x, torch.tensor([2]), epoch=1), x)


def test_fds_accumulated_epoch_equals_one_update():
    g = torch.Generator().manual_seed(0)
    x = 3 + torch.randn(200, 8, generator=g)
    b = torch.randint(0, 10, (200,), generator=g)
    one, streamed = fds.FDS(8, 10), fds.FDS(8, 10)
    for epoch in range(2):
        one.update(x * (epoch + 1), b, epoch)
        for rows in torch.split(torch.arange(200), 37):
            streamed.accumulate(x[rows] * (epoch + 1), b[rows])
        streamed.end_epoch(epoch)
    for name in ("running_mean", "running_var", "smoothed_mean", "smoothed_var"):
        torch.testing.assert_close(getattr(streamed, name), getattr(one, name))
    assert streamed._acc_count.sum() == 0


def test_fds_smooth_is_per_sample_and_differentiable():
    g = torch.Generator().manual_seed(1)
    m = fds.FDS(4, 5, ks=3)
    x = torch.randn(12, 4, generator=g)
    b = torch.arange(12) % 5
    m.update(x, b, epoch=0)
    m.update(x + torch.randn(12, 4, generator=g), b, epoch=1)
    m.train()
    z = x.clone().requires_grad_(True)
    out = m.smooth(z, b, epoch=1)
    torch.testing.assert_close(out[3:5], m.smooth(z[3:5], b[3:5], epoch=1))
    out.sum().backward()
    assert z.grad is not None and not torch.equal(z.grad, torch.ones_like(z))


def test_fds_state_dict_holds_the_statistics_not_the_window():
    keys = set(_fds().state_dict())
    assert keys == {"running_mean", "running_var", "smoothed_mean", "smoothed_var", "seen"}


def test_fds_rejects_a_wrong_feature_dimension():
    with pytest.raises(ValueError, match="features"):
        _fds().update(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), epoch=0)


# ---- RankSim -----------------------------------------------------------------------------------

# 3 samples, scores 1, 2, 4; features (1,0), (0,1), (2,1)
X3 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
Y3 = torch.tensor([1.0, 2.0, 4.0])


def test_ranksim_value_3x3_by_hand():
    # cosines: c01 = 0, c02 = 2/sqrt5 = 0.894, c12 = 1/sqrt5 = 0.447
    # label similarity -|yi - yj|: row0 [0,-1,-3] row1 [-1,0,-2] row2 [-3,-2,0]
    #   label ranks /3: row0 (1,2,3) row1 (2,1,3) row2 (3,2,1)
    # feature rows: row0 [1, 0, .894] -> (1,3,2); row1 [0, 1, .447] -> (3,1,2);
    #   row2 [.894, .447, 1] -> (2,3,1)
    # each row differs by (0, 1, -1)/3 in some order: MSE 2/27 per row; sum 6/27 = 2/9
    assert ranksim.regularizer(X3, Y3, 2.0).item() == pytest.approx(2 / 9, abs=1e-6)
    # aligned features give 0
    aligned = torch.tensor([[1.0, 0.0], [1.0, 0.5], [0.0, 1.0]])
    assert ranksim.regularizer(aligned, Y3, 2.0).item() == 0.0


def test_blackbox_rank_gradient_by_hand():
    # s = (0.3, 0.1, 0.2): ranks (1, 3, 2)/3. Upstream g = (-0.25, 0, 0).
    # lambda = 1: s + g = (0.05, 0.1, 0.2) -> ranks (3, 2, 1)/3;
    #   grad = -(r - r') / lambda = -((1,3,2) - (3,2,1))/3 = (2/3, -1/3, -1/3)
    # lambda = 2: s + 2g = (-0.2, 0.1, 0.2) -> same r'; grad halved: (1/3, -1/6, -1/6)
    # lambda = 0.1: s + 0.1 g = (0.275, 0.1, 0.2) -> r' = r: grad 0
    for lam, expected in ((1.0, [2 / 3, -1 / 3, -1 / 3]), (2.0, [1 / 3, -1 / 6, -1 / 6]),
                          (0.1, [0.0, 0.0, 0.0])):  # fmt: skip
        s = torch.tensor([[0.3, 0.1, 0.2]], requires_grad=True)
        r = ranksim.BlackboxRank.apply(s, lam, 3)
        torch.testing.assert_close(r, torch.tensor([[1 / 3, 1.0, 2 / 3]]))
        r.backward(torch.tensor([[-0.25, 0.0, 0.0]]))
        torch.testing.assert_close(s.grad, torch.tensor([expected]))


def test_ranksim_gradient_wrt_similarity_by_hand():
    # The 3x3 case, differentiated with respect to the similarity matrix S.
    # dloss/d rank_i = 2 (fr_i - lr_i) / 3; row 0: fr - lr = (0, 1/3, -1/3) -> g = (0, 2/9, -2/9)
    # lambda = 4: S_0 + 4 g = (1, 0.889, 0.005) -> ranks (1,2,3)/3;
    #   grad_0 = -((1,3,2) - (1,2,3))/3 / 4 = (0, -1/12, 1/12)
    unit = torch.nn.functional.normalize(X3, dim=1)
    sim = (unit @ unit.T).requires_grad_(True)
    loss = ranksim.rank_mse(sim, Y3, torch.ones(3, dtype=torch.bool), 4.0)
    loss.backward()
    torch.testing.assert_close(sim.grad[0], torch.tensor([0.0, -1 / 12, 1 / 12]))
    # lambda = 2: S_0 + 2 g = (1, 0.444, 0.450): ranks unchanged, gradient 0
    sim.grad = None
    ranksim.rank_mse(sim, Y3, torch.ones(3, dtype=torch.bool), 2.0).backward()
    torch.testing.assert_close(sim.grad[0], torch.zeros(3))


def test_ranksim_keeps_one_random_sample_per_score():
    # samples 0 and 1 share score 1: one of them is kept, each about half of the time
    x = torch.cat([X3[:1], torch.tensor([[5.0, -1.0]]), X3[1:]])
    y = torch.tensor([1.0, 1.0, 2.0, 4.0])
    g = torch.Generator().manual_seed(0)
    kept_first = 0
    for _ in range(400):
        keep = ranksim.representatives(y, g)
        assert keep[2:].all() and keep[:2].sum() == 1
        kept_first += int(keep[0])
    assert 160 < kept_first < 240
    # with sample 0 kept the value is the 3x3 case's
    g = torch.Generator().manual_seed(0)
    while True:
        state = g.get_state()
        if ranksim.representatives(y, g)[0]:
            break
    g.set_state(state)
    assert ranksim.regularizer(x, y, 2.0, g).item() == pytest.approx(2 / 9, abs=1e-6)


def test_ranksim_ties_rank_by_batch_position():
    # identical features: every cosine is 1, ranks follow the batch order
    rank = ranksim.normalised_rank(torch.ones(2, 4), 4)
    torch.testing.assert_close(rank, torch.tensor([[0.25, 0.5, 0.75, 1.0]] * 2))


# ---- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ks": 4}, "odd"),
        ({"ks": 0}, "odd"),
        ({"ks": -3}, "odd"),
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": -1.0}, "sigma"),
        ({"kernel": "box"}, "kernel"),
        ({"reweight": "log"}, "reweight"),
        ({"gamma": -1.0}, "gamma"),
        ({"interpolation_lambda": -2.0}, "lambda"),
        ({"interpolation_lambda": 0.0}, "lambda"),
        ({"ks": 7, "n_buckets": 5}, "larger than the number of buckets"),
        ({"n_buckets": 0}, "buckets"),
        ({"momentum": 1.5}, "momentum"),
        ({"clip": (2.0, 0.5)}, "clip"),
    ],
)
def test_check_settings_rejects(settings, message):
    with pytest.raises(ValueError, match=message) as info:
        check_settings(**settings)
    assert "\n" not in str(info.value)


def test_check_settings_accepts_the_defaults_and_modules_validate_too():
    check_settings(
        "gaussian", 5, 2.0, n_buckets=100, reweight="sqrt_inv", momentum=0.9, clip=(0.1, 10.0),
        gamma=100.0, interpolation_lambda=2.0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="odd"):
        lds.kernel_window("gaussian", 4, 2.0)
    with pytest.raises(ValueError, match="larger than"):
        fds.FDS(2, 3, ks=5)
    with pytest.raises(ValueError, match="reweight"):
        lds.sample_weights(SCORES8, EDGES4, "none")
    with pytest.raises(ValueError, match="lambda"):
        ranksim.regularizer(X3, Y3, -1.0)


def test_bucket_statistics_match_float64_on_offset_features():
    """One-pass sums in float32 stay accurate when the features share a large offset."""
    from baselines.dir.fds import bucket_statistics

    g = torch.Generator().manual_seed(0)
    bucket = torch.randint(0, 7, (500,), generator=g)
    features = 50.0 + bucket[:, None] * 0.3 + torch.randn(500, 16, generator=g)
    count, mean, m2 = bucket_statistics(features, bucket, 9)
    x = features.double()
    for k in range(9):
        rows = x[bucket == k]
        assert count[k] == len(rows)
        if len(rows):
            torch.testing.assert_close(mean[k].double(), rows.mean(0), rtol=0, atol=1e-5)
            m2_64 = ((rows - rows.mean(0)) ** 2).sum(0)
            torch.testing.assert_close(m2[k].double(), m2_64, rtol=1e-4, atol=1e-4)
        else:
            assert (mean[k] == 0).all() and (m2[k] == 0).all()
