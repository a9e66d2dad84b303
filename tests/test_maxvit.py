"""MaxViT: the paper config's size, the input conversion, weights from a timm file."""

from __future__ import annotations

import pytest
import timm
import torch

from baselines import create_model, model_config
from iaa_common import UserError

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


def test_input_is_converted_from_imagenet_statistics_to_the_tf_range():
    model = create_model("maxvit", "smoke")
    pixels = torch.rand(2, 3, 4, 4)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (pixels - mean) / std
    converted = x * model.input_scale + model.input_shift
    torch.testing.assert_close(converted, (pixels - 0.5) / 0.5)


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
    with pytest.raises(UserError, match="one weights part"):
        create_model("maxvit", "smoke", weights={"theme": path})
