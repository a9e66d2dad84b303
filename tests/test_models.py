"""The model surface, local weight files, and one training step's loss (eq. 10)."""

import pytest
import torch
from torch import nn

from baselines import create_model, list_models, model_config, model_entry
from baselines.registry import resolve_config
from bench.train.loop import label_scores, training_loss
from bench.train.losses import batch_loss
from bench.train.methods import MethodOptions
from elta import flsa
from iaa_common import UserError


@pytest.mark.parametrize("name", sorted(list_models()))
def test_every_model_has_the_surface(name):
    model = create_model(name, "smoke").eval()
    size = model_config(name, "smoke")["img_size"]
    x = torch.randn(3, 3, size, size)
    extras = {  # the per-image inputs a model declares in `needs` (square, unpadded images)
        "aspect": torch.ones(3),
        "size": torch.full((3, 2), size, dtype=torch.int64),
    }
    extras = {key: extras[key] for key in model.needs}
    z = model.forward_features(x, **extras)
    assert z.shape == (3, model.feature_dim)
    out = model.forward_head(z)
    output = getattr(model, "output", "logits")  # what the harness reads (bench.train.loop)
    assert out.shape == ((3, 1) if output == "score" else (3, 10))
    torch.testing.assert_close(model(x, **extras), out)
    assert list(model.needs) == model_entry(name)["needs"]  # what --list says


@pytest.mark.parametrize("name", sorted(list_models()))
@pytest.mark.parametrize(
    ("profile", "dataset"), [("smoke", None), ("paper", None), ("paper", "tad66k")]
)
def test_the_head_a_config_names_is_the_models_output(name, profile, dataset):
    config, _ = resolve_config(name, profile, dataset)
    with torch.device("meta"):  # shapes only
        model = create_model(name, profile, config=config)
    assert getattr(model, "output", "logits") == config.get("head", "logits")


def test_weights_load_from_a_local_file(tmp_path):
    source = create_model("swinv2", "smoke")
    path = tmp_path / "backbone.pth"
    torch.save(source.backbone.state_dict(), path)
    loaded = create_model("swinv2", "smoke", weights=path)
    fresh = create_model("swinv2", "smoke")
    for key, value in source.backbone.state_dict().items():
        if value.is_floating_point() and value.numel() > 1:
            assert torch.equal(loaded.backbone.state_dict()[key], value), key
    differs = any(
        not torch.equal(fresh.backbone.state_dict()[k], v)
        for k, v in source.backbone.state_dict().items()
        if v.is_floating_point()
    )
    assert differs  # the comparison above could fail


def test_missing_weights_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nothing.pth"):
        create_model("swinv2", "smoke", weights=tmp_path / "nothing.pth")


class _Toy(nn.Module):
    """A linear 'backbone' and head with the registry's surface."""

    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(4, 3), nn.Linear(3, 10)
        self.feature_dim = 3

    def forward_features(self, x):
        return self.body(x)

    def forward_head(self, z):
        return self.head(z)


def test_training_loss_is_eq10_with_flsa():
    torch.manual_seed(0)
    model = _Toy()
    x = torch.randn(6, 4)
    targets = torch.softmax(torch.randn(6, 10), -1)
    opts = MethodOptions(flsa_weight=0.5)
    got = training_loss(model, x, targets, n_pseudo=2, opts=opts, generator=torch.Generator())
    z = model.forward_features(x)
    logits = model.forward_head(z)
    l_s = batch_loss(logits[:4], targets[:4], "per_sample")
    l_u = batch_loss(logits[4:], targets[4:], "per_sample")
    expected = l_s + l_u + 0.5 * flsa.alignment_loss(z, label_scores(targets))
    torch.testing.assert_close(got, expected)


def test_training_loss_with_tfa_counts_mixed_rows_as_labelled():
    torch.manual_seed(1)
    model = _Toy()
    x = torch.randn(6, 4)
    targets = torch.rand(6) * 9 + 1  # scalar scores
    opts = MethodOptions(tfa=True, tfa_pairs=3)
    g = torch.Generator().manual_seed(3)
    got = training_loss(model, x, targets, n_pseudo=0, opts=opts, generator=g)
    from elta import tfa

    z, t = tfa.mix(model.forward_features(x), targets, targets, 3, 0.2, 4.0,
                   torch.Generator().manual_seed(3))  # fmt: skip
    torch.testing.assert_close(got, batch_loss(model.forward_head(z), t, "per_sample"))


def test_a_backbone_file_of_another_model_is_a_user_error(tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="vgg.pth: not a timm swinv2_tiny_window8_256 checkpoint"):
        create_model("swinv2", "smoke", weights=path)
