"""The loop references of bench/dev/perf_dir.py give the same numbers as baselines/dir (no
timing)."""

import pytest
import torch

from baselines.dir import ranksim
from baselines.dir.fds import FDS
from bench.dev import perf_dir


def test_loop_fds_update_matches_fds_update():
    features, bucket = perf_dir.fds_inputs(n_buckets=20, n_features=600, feature_dim=16, seed=1)
    ours, loop = FDS(16, 20), FDS(16, 20)
    for epoch in range(3):  # the first update replaces, the next ones blend with momentum
        x = features * (1 + 0.5 * epoch) + epoch
        ours.update(x, bucket, epoch)
        perf_dir.loop_fds_update(loop, x, bucket, epoch)
        for name in ("running_mean", "running_var", "smoothed_mean", "smoothed_var", "seen"):
            torch.testing.assert_close(getattr(loop, name), getattr(ours, name))
    assert ours.running_var.min() > 0.5  # a real variance, not the initial 1 or 0


def test_loop_fds_update_single_sample_bucket():
    x = torch.tensor([[1.0, 2.0], [3.0, 5.0], [4.0, 4.0], [0.0, 1.0], [2.0, 2.0]])
    b = torch.tensor([0, 0, 1, 2, 2])  # bucket 1 has one sample: variance 0
    ours, loop = FDS(2, 3, ks=3), FDS(2, 3, ks=3)
    ours.update(x, b, 0)
    perf_dir.loop_fds_update(loop, x, b, 0)
    torch.testing.assert_close(loop.running_var, ours.running_var)
    torch.testing.assert_close(loop.smoothed_var, ours.smoothed_var)


@pytest.mark.parametrize("distinct", [True, False])
def test_loop_regularizer_matches_value_and_gradient(distinct):
    x, scores = perf_dir.ranksim_inputs(batch=48, feature_dim=12, seed=2, distinct=distinct)
    if not distinct:
        assert len(torch.unique(scores)) < 30  # ties: representatives matter
    results = []
    for fn in (ranksim.regularizer, perf_dir.loop_regularizer):
        z = x.clone().requires_grad_(True)
        g = torch.Generator().manual_seed(5)
        value = fn(z, scores, 2.0, g)
        (100.0 * value).backward()  # gamma = 100 reaches the blackbox perturbation
        results.append((value.detach(), z.grad))
    (v_ours, g_ours), (v_loop, g_loop) = results
    torch.testing.assert_close(v_loop, v_ours)
    torch.testing.assert_close(g_loop, g_ours)
    assert v_ours > 0 and g_ours.abs().sum() > 0
