"""MaxViT: the paper config's size, input statistics from timm's pretrained config of the
variant (the pooled feature equals timm's own on the same pixels, with and without a
conversion), weights from a timm file."""

from __future__ import annotations

import pytest
import timm
import torch

from baselines import create_model, maxvit, model_config
from iaa_common import UserError

# The pixels' normalisation, written out here: ImageNet's (the harness's) and the TF ports' 0.5.
IMAGENET = (torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225]))
HALF = (torch.full((3,), 0.5), torch.full((3,), 0.5))


def _normalised(pixels: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    mean, std = (t.view(1, 3, 1, 1) for t in stats)
    return (pixels - mean) / std


def _pooled_feature_equals_timms(tmp_path, profile: str, config: dict, stats):
    """A seeded random timm model of `config` in timm's layout (1000-way head) saved as a file,
    loaded as the harness model's backbone: on the same pixels, the harness's feature of the
    ImageNet-normalised image equals timm's pre-logits of the image normalised with `stats`."""
    torch.manual_seed(0)
    size = config["img_size"]
    reference = timm.create_model(
        config["timm_name"], img_size=size, **config["timm_kwargs"]
    ).eval()
    path = tmp_path / "timm_backbone.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("maxvit", profile, {"backbone": path}, config=config).eval()
    pixels = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.forward_features(_normalised(pixels, IMAGENET))
        x = _normalised(pixels, stats)
        theirs = reference.forward_head(reference.forward_features(x), pre_logits=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    return model


REFERENCE_PARAMS = 30.41e6  # BASELINES.md: maxvit_tiny_tf_224 with a 10-way head


def test_paper_config_is_maxvit_t_with_a_10_way_head():
    model = create_model("maxvit", "paper")
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - REFERENCE_PARAMS) / REFERENCE_PARAMS < 0.02
    assert model.feature_dim == 512
    assert model.backbone.head.fc.out_features == 10


@pytest.mark.parametrize("profile", ["cpu", "smoke"])
def test_small_configs_have_non_degenerate_partitions(profile):
    model = create_model("maxvit", profile).eval()
    size = model_config("maxvit", profile)["img_size"]
    assert size // 32 >= 2  # window and grid partitions of at least 2 x 2 tokens
    x = torch.randn(4, 3, size, size)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[k : k + 1]) for k in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)  # batch independent


def test_paper_feature_with_imagenet_weights_equals_timms_own(tmp_path):
    """maxvit_tiny_tf_224.in1k's pretrained config has ImageNet's mean/std: no conversion."""
    config = model_config("maxvit", "paper")
    assert timm.models.get_pretrained_cfg(config["timm_name"]).mean == (0.485, 0.456, 0.406)
    model = _pooled_feature_equals_timms(tmp_path, "paper", config, IMAGENET)
    assert not model.input_norm.converts


def test_a_variant_with_other_statistics_gets_its_own(tmp_path):
    """maxvit_tiny_tf_384.in1k's pretrained config has mean = std = 0.5 (the TF range): the
    ImageNet-normalised input is converted to it."""
    config = {**model_config("maxvit", "smoke"), "timm_name": "maxvit_tiny_tf_384"}
    assert timm.models.get_pretrained_cfg("maxvit_tiny_tf_384").mean == (0.5, 0.5, 0.5)
    model = _pooled_feature_equals_timms(tmp_path, "smoke", config, HALF)
    assert model.input_norm.converts
    pixels = torch.rand(2, 3, 4, 4)
    convert = maxvit.VariantInput({"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)})
    torch.testing.assert_close(convert(_normalised(pixels, IMAGENET)), (pixels - 0.5) / 0.5)
    same = maxvit.VariantInput({"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)})
    x = torch.randn(2, 3, 4, 4)
    assert same(x) is x  # no operation at all


def _timm_smoke(num_classes: int) -> torch.nn.Module:
    config = model_config("maxvit", "smoke")
    return timm.create_model(
        config["timm_name"], num_classes=num_classes, img_size=config["img_size"],
        **config["timm_kwargs"],
    )  # fmt: skip


def test_imagenet_file_in_timm_layout_loads_and_drops_the_1000_way_head(tmp_path):
    torch.manual_seed(0)
    source = _timm_smoke(1000).state_dict()
    path = tmp_path / "maxvit_in1k.pth"
    torch.save(source, path)
    torch.manual_seed(1)
    loaded = create_model("maxvit", "smoke", weights={"auto": path}).backbone.state_dict()
    torch.manual_seed(1)
    fresh = create_model("maxvit", "smoke").backbone.state_dict()
    for key, value in source.items():
        if key.startswith("head.fc."):
            assert loaded[key].shape[0] == 10  # the 10-bin head, not ImageNet's
            continue
        torch.testing.assert_close(loaded[key], value)
    assert any(not torch.equal(fresh[k], source[k]) for k in source if not k.startswith("head.fc"))


def test_wrong_file_or_part_is_a_user_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, path)
    with pytest.raises(UserError, match="other.pth"):
        create_model("maxvit", "smoke", weights={"auto": path})
    with pytest.raises(UserError, match=r"other\.pth: unknown weights part 'theme'"):
        create_model("maxvit", "smoke", weights={"theme": path})
