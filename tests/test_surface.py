"""What the registry guarantees for every model (baselines/registry.py, baselines/surface.py):
the surface is checked, the harness's keys never reach `build`, a bare path is part "auto", weight
parts are validated against the module's WEIGHT_PARTS and arrive in their order, and a whole
model stored by the harness loads back. Fake model modules are registered for the tests."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from baselines import registry
from baselines.surface import MEMBERS, OPTIONAL, IAAModel, lacks
from iaa_common import UserError

CONFIG = {
    "img_size": 8,
    "width": 3,
    "recipe": {"lr": 1.0},
    "procedure": {"steps": 2},
    "pretrain": {"part": "theme", "epochs": 1},
}


class Complete(nn.Module):
    needs: tuple[str, ...] = ()

    def __init__(self, width: int):
        super().__init__()
        self.body, self.head = nn.Linear(3, width), nn.Linear(width, 10)
        self.feature_dim = width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class Partial(nn.Module):
    """No forward_head, no feature_dim, nn.Module's placeholder forward."""

    needs: tuple[str, ...] = ()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.fixture
def fake(monkeypatch):
    """Two registered models, `fake` (the whole surface) and `partial`; returns the list of
    (weights, config) that `fake`'s build received."""
    calls = []

    def build_complete(weights=None, **config):
        calls.append((weights, config))
        return Complete(config["width"])

    def build_partial(weights=None, **config):
        return Partial()

    modules = {
        "fake_complete_model": {"build": build_complete, "WEIGHT_PARTS": ("auto", "backbone")},
        "fake_partial_model": {"build": build_partial},
    }
    for name, members in modules.items():
        module = types.ModuleType(name)
        vars(module).update(members)
        monkeypatch.setitem(sys.modules, name, module)
    entries = {
        **registry._registry(),
        "fake": {"module": "fake_complete_model", "configs": {"smoke": CONFIG}},
        "partial": {"module": "fake_partial_model", "configs": {"smoke": CONFIG}},
    }
    monkeypatch.setattr(registry, "_registry", lambda: entries)
    return calls


def test_protocol_members():
    assert MEMBERS == ("forward_features", "forward_head", "forward", "feature_dim", "needs")
    assert "forward_features(x, **extras)" in IAAModel.__doc__
    # `output` is documented, optional, and "logits" when absent (bench.train.loop.output_of)
    assert OPTIONAL == ("output",) and IAAModel.output == "logits"
    assert '"score"         (B, 1) the score / 10' in IAAModel.__doc__
    assert lacks(Complete(3)) == [] and not hasattr(Complete(3), "output")


def test_a_model_lacking_part_of_the_surface_is_a_user_error(fake):
    with pytest.raises(UserError) as err:
        registry.create_model("partial", "smoke")
    assert str(err.value) == (
        "model 'partial' (fake_partial_model) lacks forward_head, forward, feature_dim: "
        "see baselines/surface.py"
    )
    assert isinstance(registry.create_model("fake", "smoke"), Complete)


def test_build_gets_the_structure_without_the_harness_keys(fake):
    registry.create_model("fake", "smoke")
    assert fake == [(None, {"img_size": 8, "width": 3})]


def test_weight_parts_bare_path_order_and_errors(fake, tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"")
    registry.create_model("fake", "smoke", weights=str(path))
    registry.create_model("fake", "smoke", weights={"backbone": path, "theme": path, "auto": path})
    assert [weights for weights, _ in fake] == [
        {"auto": path},  # a bare path is part "auto"
        {"auto": path, "backbone": path, "theme": path},  # WEIGHT_PARTS' order, then pretrain
    ]
    config = registry.model_config("fake", "smoke")
    assert registry.weight_parts("fake", config) == ("auto", "backbone", "theme", "model")
    with pytest.raises(UserError) as err:
        registry.create_model("fake", "smoke", weights={"head": tmp_path / "head.pth"})
    assert str(err.value) == (
        f"{tmp_path / 'head.pth'}: unknown weights part 'head' for model 'fake' "
        "(its parts: auto, backbone, theme, model)"
    )
    with pytest.raises(UserError, match=r"nothing\.pth: weights file not found \(model 'fake'"):
        registry.create_model("fake", "smoke", weights={"backbone": tmp_path / "nothing.pth"})


def test_a_whole_model_stored_by_the_harness_loads_back(fake, tmp_path):
    torch.manual_seed(1)
    stored = registry.create_model("fake", "smoke")
    path = tmp_path / "model.pt"
    torch.save(stored.state_dict(), path)
    torch.manual_seed(2)
    loaded = registry.create_model("fake", "smoke", weights={"model": path})
    assert fake[-1][0] is None  # the part "model" is the registry's, not build's
    for key, value in stored.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    torch.save({"body.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(UserError, match=r"model\.pt: not a 'fake' model saved by this harness"):
        registry.create_model("fake", "smoke", weights={"model": path})


@pytest.mark.parametrize("name", sorted(registry.list_models()))
def test_the_parts_listed_in_models_toml_are_the_modules(name):
    """--list (models.toml's `weights`) offers exactly the parts the module loads."""
    entry = registry.model_entry(name)
    assert set(entry["weights"]) | {"auto"} == {*registry.model_module(name).WEIGHT_PARTS}
