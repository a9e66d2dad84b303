"""LDS, FDS and RankSim as run options: where each acts in a training step
(bench/train/dir_terms.py), their place in a stage's identity, bad settings, and a smoke round
with every module on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import run_all
from baselines.dir import lds, ranksim
from bench.data.types import Split
from bench.run.store import Store
from bench.train.dir_terms import DIRTerms
from bench.train.loop import training_loss
from bench.train.losses import per_sample_loss
from bench.train.methods import MethodOptions

TRAIN_SCORES = np.array([2.0, 5.0, 5.0, 5.05, 5.1, 5.2, 6.0, 9.0], dtype=np.float32)


class _Linear(nn.Module):
    needs = ()
    feature_dim = 3

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body, self.head = nn.Linear(4, 3), nn.Linear(3, 10)

    def forward_features(self, x):
        return self.body(x)

    def forward_head(self, z):
        return self.head(z)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _terms(**options) -> tuple[MethodOptions, DIRTerms]:
    opts = MethodOptions(**options)
    train = Split(np.zeros((8, 2, 2, 3), np.uint8), TRAIN_SCORES, None, list("abcdefgh"))
    return opts, DIRTerms(opts, train, _Linear.feature_dim, torch.device("cpu"))


def test_lds_weights_every_row_by_the_bin_of_its_label():
    opts, terms = _terms(lds=True)
    model, x = _Linear(), torch.randn(4, 4)
    targets = torch.tensor([2.0, 5.0, 5.02, 9.0])  # scalar scores
    got = training_loss(model, x, targets, 0, opts, torch.Generator(), dir_terms=terms)
    table = lds.bin_weights(TRAIN_SCORES, lds.SCORE_BIN_EDGES, "sqrt_inv")
    bins = lds.bin_indices(targets.numpy())
    assert bins.tolist() == [20, 50, 50, 90]
    weights = torch.tensor(table[bins], dtype=torch.float32)
    assert weights[0] > weights[1] and weights[3] > weights[1]  # the rare scores weigh more
    expected = (per_sample_loss(model(x), targets) * weights).mean()
    torch.testing.assert_close(got, expected)


def test_fds_calibrates_the_pooled_feature_from_the_second_epoch_with_the_first_ones_statistics():
    opts, terms = _terms(fds=True)
    model, x = _Linear(), torch.randn(8, 4)
    targets = torch.from_numpy(TRAIN_SCORES)
    plain = training_loss(model, x, targets, 0, MethodOptions(), torch.Generator())
    terms.start_epoch(0)
    first = training_loss(model, x, targets, 0, opts, torch.Generator(), dir_terms=terms)
    torch.testing.assert_close(first, plain)  # start_smooth = 1: no calibration in epoch 0
    terms.end_epoch()  # the epoch's features become the statistics
    terms.start_epoch(1)
    second = training_loss(model, x, targets, 0, opts, torch.Generator(), dir_terms=terms)
    z = model.forward_features(x)
    calibrated = terms.fds.smooth(z, terms.bins(targets), 1)
    expected = per_sample_loss(model.forward_head(calibrated), targets).mean()
    torch.testing.assert_close(second, expected)
    assert not torch.allclose(second, plain)  # the calibration did something
    with torch.no_grad():
        model.eval()  # evaluation is never calibrated: the statistics are not the model's
        torch.testing.assert_close(model(x), model.forward_head(z))


def test_ranksim_adds_gamma_times_its_regulariser_of_the_labelled_rows():
    opts, terms = _terms(ranksim_weight=100.0, ranksim_lambda=2.0)
    model, x = _Linear(), torch.randn(6, 4)
    targets = torch.tensor([2.0, 3.0, 4.0, 7.0, 8.0, 9.0])
    got = training_loss(model, x, targets, 2, opts, torch.Generator().manual_seed(3), None, terms)
    base = training_loss(model, x, targets, 2, MethodOptions(), torch.Generator())
    z = model.forward_features(x)
    term = ranksim.regularizer(z[:4], targets[:4], 2.0, torch.Generator().manual_seed(3))
    assert term > 0
    torch.testing.assert_close(got, base + 100.0 * term)


def test_dir_options_enter_a_stage_identity_only_when_on():
    plain = MethodOptions().round1_dict()
    assert not [key for key in plain if key.split("_")[0] in ("lds", "fds", "ranksim")]
    with_lds = MethodOptions(lds=True, lds_ks=7).round1_dict()
    assert with_lds["lds"] and with_lds["lds_ks"] == 7 and "fds_ks" not in with_lds
    assert MethodOptions(ranksim_weight=5.0).round1_dict()["ranksim_weight"] == 5.0


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--lds-ks", "4"], "LDS (--lds-*): DIR kernel size ks must be a positive odd integer"),
        (["--fds-ks", "0"], "FDS (--fds-*): DIR kernel size ks must be a positive odd integer"),
        (["--lds-sigma", "0"], "LDS (--lds-*): DIR kernel sigma must be > 0"),
        (["--fds-kernel", "box"], "FDS (--fds-*): unknown DIR kernel 'box'"),
        (["--lds-reweight", "log"], "unknown LDS reweight 'log'"),
        (["--ranksim-gamma", "-1"], "RankSim weight gamma must be >= 0"),
        (["--ranksim-lambda", "-2"], "RankSim interpolation lambda must be > 0"),
        (["--fds-ks", "101"], "ks=101 is larger than the number of buckets 100"),
    ],
)
def test_bad_dir_settings_are_one_line_and_exit_code_2(args, needle, tmp_path, capsys):
    code = run_all.main(
        ["--model", "swinv2", "--profile", "smoke", *args, "--results", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_smoke_round_with_every_module_at_once(tmp_path, capsys):
    methods = "tfa,flsa,apds,lds,fds,ranksim"
    args = ["--model", "swinv2", "--methods", methods, "--profile", "smoke", "--jobs", "1"]
    assert run_all.main([*args, "--results", str(tmp_path)]) == 0
    store = Store(tmp_path)
    stages = [d for d in (tmp_path / "runs").iterdir() if not d.name.startswith(".")]
    assert len(stages) == 2 and all(store.is_ok(d.name) for d in stages)
    row = next(line for line in capsys.readouterr().out.splitlines() if "| swinv2 |" in line)
    assert methods.replace(",", "+") in row and "failed" not in row
