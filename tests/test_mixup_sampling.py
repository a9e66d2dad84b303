"""Section 4.4's ablation samplers and the method options that select them."""

import pytest
import torch

from bench.train.loop import training_loss
from bench.train.methods import MethodOptions
from bench.train.mixup_sampling import random_pairs, threshold_pairs
from elta import tfa
from iaa_common import UserError

# mean 5.0: deviations 3, 0.2, 0.1, 0, 0.1, 0.2, 2.5, 0.5 -> minority at delta 1.0: {0, 6}
SCORES = torch.tensor([2.0, 4.8, 4.9, 5.0, 5.1, 5.2, 7.5, 5.5])


def _draws(sampler, n: int = 2000, **kwargs):
    g = torch.Generator().manual_seed(0)
    pairs = [sampler(SCORES, generator=g, **kwargs) for _ in range(n)]
    return [torch.cat(parts) for parts in zip(*pairs, strict=True)]


def test_threshold_pairs_mix_only_the_minority():
    i, j, lam = _draws(threshold_pairs, n_pairs=4, delta=1.0)
    assert set(i.tolist()) == {0, 6} and set(j.tolist()) == {0, 6}
    assert (i != j).all()
    assert 0.45 < (i == 0).float().mean() < 0.55  # uniform among the minority
    assert lam.min() >= 0 and lam.max() <= 1 and abs(lam.mean().item() - 0.5) < 0.02


def test_threshold_pairs_without_a_minority_fall_back_to_random_pairs():
    i, j, _ = _draws(threshold_pairs, n=500, n_pairs=4, delta=10.0)
    assert (i != j).all()
    assert set(i.tolist()) == set(range(8))  # every sample can be drawn


def test_random_pairs_are_uniform_distinct_and_never_self():
    i, j, lam = _draws(random_pairs, n_pairs=3)
    per_draw = i.view(-1, 3)
    assert (per_draw[:, 0] != per_draw[:, 1]).all() and (per_draw[:, 1] != per_draw[:, 2]).all()
    assert (i != j).all()
    freq = torch.bincount(i, minlength=8).float() / len(i)
    assert (freq - 1 / 8).abs().max() < 0.02  # 6000 draws: sd of a frequency ~0.004
    assert abs(lam.mean().item() - 0.5) < 0.02


def test_elta_sampling_prefers_the_tails_where_random_does_not():
    g = torch.Generator().manual_seed(0)
    elta_i = torch.cat([tfa.sample_pairs(SCORES, 2, 0.2, 4.0, g)[0] for _ in range(500)])
    random_i = _draws(random_pairs, n=500, n_pairs=2)[0]
    tails = torch.tensor([0, 6])
    assert torch.isin(elta_i, tails).float().mean() > 0.9
    assert torch.isin(random_i, tails).float().mean() < 0.35


def test_sampling_options_enter_the_stage_identity_only_when_used():
    elta = MethodOptions(tfa=True).round1_dict()
    assert "tfa_sampling" not in elta and "tfa_threshold" not in elta  # old ids unchanged
    random = MethodOptions(tfa=True, tfa_sampling="random").round1_dict()
    assert random["tfa_sampling"] == "random" and "tau1" not in random
    assert "tfa_threshold" not in random
    threshold = MethodOptions(tfa=True, tfa_sampling="threshold", tfa_threshold=0.5)
    assert threshold.round1_dict()["tfa_threshold"] == 0.5
    assert "tfa_sampling" not in MethodOptions(tfa_sampling="random").round1_dict()  # TFA off


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"tfa_sampling": "beta"}, "tfa_sampling"), ({"tfa_threshold": -1.0}, "tfa_threshold")],
)
def test_bad_sampling_options_are_user_errors(kwargs, needle):
    with pytest.raises(UserError, match=needle):
        MethodOptions(**kwargs)


class _Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = torch.nn.Linear(6, 4), torch.nn.Linear(4, 10)

    def forward_features(self, x):
        return self.body(x)

    def forward_head(self, z):
        return self.head(z)


@pytest.mark.parametrize("sampling", ["random", "threshold"])
def test_training_loss_runs_with_each_ablation_sampler(sampling):
    torch.manual_seed(0)
    x, targets = torch.randn(8, 6), torch.softmax(torch.randn(8, 10), -1)
    opts = MethodOptions(tfa=True, tfa_sampling=sampling, tfa_threshold=0.5, flsa_weight=1.0)
    loss = training_loss(_Linear(), x, targets, 0, opts, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss.requires_grad
