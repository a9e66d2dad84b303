"""NIMA (baselines/nima.py): surface at every profile, the paper's size, batch independence, the
input conventions, and loading every public checkpoint layout from files written here."""

import pytest
import torch
from torch import nn

from baselines import create_model, nima
from baselines.registry import HARNESS_KEYS, model_config
from baselines.weights import read_state_dict
from iaa_common import UserError

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

# osmr/imgclsmob README.md, "BN-Inception | ... | 11,295,240 | From [Cadene/pretrained...pytorch]":
# the 1000-way ImageNet model; NIMA replaces its Linear(1024, 1000) by Linear(1024, 10).
BN_INCEPTION_1000_WAY = 11_295_240
NIMA_BN_INCEPTION = BN_INCEPTION_1000_WAY - (1024 * 1000 + 1000) + (1024 * 10 + 10)


def config(profile: str) -> dict:
    return {k: v for k, v in model_config("nima", profile).items() if k not in HARNESS_KEYS}


def imagenet(x01: torch.Tensor) -> torch.Tensor:
    return (x01 - IMAGENET_MEAN) / IMAGENET_STD


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def paper_model():
    """One randomly initialised paper-profile model (10M parameters), shared; do not modify."""
    torch.manual_seed(0)
    return nima.build(**config("paper")).eval()


# ---- surface and structure -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "profile, batch, dim, side", [("smoke", 3, 128, 2), ("cpu", 3, 256, 3), ("paper", 2, 1024, 7)]
)
def test_surface_at_every_profile(profile, batch, dim, side, paper_model):
    torch.manual_seed(0)
    cfg = config(profile)
    model = paper_model if profile == "paper" else nima.build(**cfg).eval()
    s = cfg["img_size"]
    x = torch.randn(batch, 3, s, s)
    maps = []
    hook = model.backbone.register_forward_hook(lambda m, i, out: maps.append(out.shape))
    with torch.no_grad():
        z = model.forward_features(x)
    hook.remove()
    assert maps == [(batch, dim, side, side)]  # the last map before the global average pool
    with torch.no_grad():
        logits = model.forward_head(z)
        assert z.shape == (batch, model.feature_dim) and model.feature_dim == dim
        assert logits.shape == (batch, 10)
        torch.testing.assert_close(model(x), logits)
    assert model.needs == ()
    assert isinstance(model.head[0], nn.Dropout) and model.head[0].p == 0.75


def test_paper_map_sizes_and_block_outputs_follow_ioffe_szegedy():
    with torch.device("meta"):
        paper = nima.BNInception()
    assert paper.map_sizes(224) == [("3c", 28), ("4e", 14), ("out", 7)]  # 224/8, /16, /32
    # Output depths of Figure 5's rows 3a..5b, from the table built one prefix at a time.
    depths = [256, 320, 576, 576, 576, 608, 608, 1056, 1024, 1024]
    names = [b.name for b in nima.BN_INCEPTION_BLOCKS]
    for i, depth in enumerate(depths):
        with torch.device("meta"):  # shapes only
            assert nima.BNInception(blocks=names[: i + 1]).num_features == depth, names[i]


def test_cadene_key_names_and_shapes(paper_model):
    """Names and shapes read off Cadene's bninception.py (conv biases, no 1x1 or pool projection
    in the reduction blocks 3c and 4e), 69 conv+BN units = 414 tensors."""
    state = paper_model.backbone.state_dict()
    expected = {
        "conv1_7x7_s2.weight": (64, 3, 7, 7),
        "conv1_7x7_s2.bias": (64,),
        "conv1_7x7_s2_bn.running_var": (64,),
        "conv2_3x3.weight": (192, 64, 3, 3),
        "inception_3a_1x1.weight": (64, 192, 1, 1),
        "inception_3a_pool_proj.weight": (32, 192, 1, 1),
        "inception_3b_double_3x3_reduce.weight": (64, 256, 1, 1),
        "inception_3c_3x3.weight": (160, 128, 3, 3),
        "inception_3c_double_3x3_2.weight": (96, 96, 3, 3),
        "inception_4a_1x1.weight": (224, 576, 1, 1),
        "inception_4e_double_3x3_1.weight": (256, 192, 3, 3),
        "inception_5a_1x1.weight": (352, 1056, 1, 1),
        "inception_5b_double_3x3_2_bn.weight": (224,),
        "inception_5b_pool_proj.weight": (128, 1024, 1, 1),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    for absent in ("inception_3c_1x1.weight", "inception_4e_pool_proj.weight"):
        assert absent not in state
    assert len([k for k in state if not k.endswith("num_batches_tracked")]) == 414


def test_paper_parameter_count_is_bn_inception_with_a_10_way_head(paper_model):
    model = paper_model
    n = n_params(model)
    assert NIMA_BN_INCEPTION == 10_280_490
    assert abs(n - NIMA_BN_INCEPTION) / NIMA_BN_INCEPTION < 0.005, n  # stated tolerance 0.5 %
    conv1 = model.backbone.conv1_7x7_s2
    assert n_params(conv1) == 7 * 7 * 3 * 64 + 64  # by hand: 9,472
    assert n_params(model.head) == 1024 * 10 + 10


def test_cpu_profile_is_the_same_structure_smaller():
    cpu = nima.build(**config("cpu"))
    with torch.device("meta"):
        paper_types = {type(m) for m in nima.BNInception().modules()}
    assert {type(m) for m in cpu.backbone.modules()} == paper_types  # Conv2d, BatchNorm2d
    names = dict(cpu.backbone.named_children())
    for unit in ("1x1", "3x3_reduce", "3x3", "double_3x3_reduce", "double_3x3_1",
                 "double_3x3_2", "pool_proj"):  # fmt: skip
        assert f"inception_4a_{unit}" in names and f"inception_5b_{unit}" in names
    assert "inception_3c_3x3" in names and "inception_3c_1x1" not in names  # a reduction
    assert [b.name for b in cpu.backbone.specs if b.stride == 2] == ["3c", "4e"]
    assert cpu.backbone.map_sizes(48) == [("3c", 12), ("4e", 6), ("out", 3)]
    assert n_params(cpu) < 0.05 * NIMA_BN_INCEPTION


def test_odd_maps_before_a_reduction_are_refused():
    with pytest.raises(UserError, match="odd feature maps"):
        nima.build(img_size=48, width=0.125, stem_pools=2)  # 48 -> 6 -> 3: 4e would not fit


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_eval_outputs_do_not_depend_on_the_batch(profile):
    torch.manual_seed(1)
    cfg = config(profile)
    model = nima.build(**cfg)
    x = torch.randn(5, 3, cfg["img_size"], cfg["img_size"])
    model.train()
    model(x).sum().backward()  # trains BN statistics a little; eval must still be per sample
    model.eval()
    with torch.no_grad():
        whole = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(5)])
        shuffled = model(x.flip(0)).flip(0)
    torch.testing.assert_close(whole, alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(whole, shuffled, atol=1e-5, rtol=1e-4)


# ---- input conventions ---------------------------------------------------------------------------


class _Record(nn.Module):
    def forward(self, x):
        self.seen = x
        return x


@pytest.mark.parametrize("convention", ["caffe_bgr", "inception", "imagenet"])
def test_input_map_converts_our_normalisation_exactly(convention):
    model = nima.build(**config("smoke"))
    model.set_input_convention(convention)
    model.backbone = _Record()
    x01 = torch.rand(2, 3, 5, 5)
    model.forward_features(imagenet(x01))
    expected = {
        "caffe_bgr": 255 * x01.flip(1) - torch.tensor([104.0, 117.0, 128.0]).view(1, 3, 1, 1),
        "inception": 2 * x01 - 1,
        "imagenet": imagenet(x01),
    }[convention]
    torch.testing.assert_close(model.backbone.seen, expected, atol=2e-4, rtol=1e-5)


def test_caffe_map_of_the_imagenet_mean_colour_by_hand():
    model = nima.build(**config("smoke"))
    model.set_input_convention("caffe_bgr")
    model.backbone = _Record()
    model.forward_features(torch.zeros(1, 3, 1, 1))  # the ImageNet mean colour
    # BGR 255 * (0.406, 0.456, 0.485) = (103.53, 116.28, 123.675), minus (104, 117, 128)
    torch.testing.assert_close(
        model.backbone.seen.flatten(), torch.tensor([-0.47, -0.72, -4.325]), atol=1e-4, rtol=0
    )


# ---- checkpoints in the public layouts -----------------------------------------------------------


def _changed(fresh: nn.Module, loaded: nn.Module, key: str) -> bool:
    return not torch.equal(fresh.state_dict()[key], loaded.state_dict()[key])


class _Pyiqa(nn.Module):
    """pyiqa/archs/nima_arch.py's NIMA: timm features_only -> GAP -> Flatten-Dropout-Linear-
    Softmax (its input normalisation is the timm model's pretrained_cfg mean/std)."""

    def __init__(self, timm_name: str, channels: int):
        super().__init__()
        import timm

        self.base_model = timm.create_model(timm_name, pretrained=False, features_only=True)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.0), nn.Linear(channels, 10), nn.Softmax(dim=-1)
        )

    def forward(self, x):
        return self.classifier(self.global_pool(self.base_model(x)[-1]))


@pytest.mark.parametrize(
    "timm_name, channels, backbone, size, port_input",
    [
        ("vgg16", 512, "pyiqa_vgg16", 64, imagenet),
        ("inception_resnet_v2", 1536, "pyiqa_inception_resnet_v2", 75, lambda x: (x - 0.5) / 0.5),
    ],
)
def test_pyiqa_checkpoints_load_and_reproduce_the_port(
    tmp_path, timm_name, channels, backbone, size, port_input
):
    torch.manual_seed(2)
    port = nima._materialise(lambda: _Pyiqa(timm_name, channels)).eval()
    with torch.no_grad():  # non-trivial BN statistics, so that loading them is tested too
        for m in port.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"NIMA_{timm_name}.pth"
    torch.save({"params": port.state_dict()}, path)

    model = nima.build(weights={"auto": path}, **config("paper")).eval()
    assert model.backbone_name == backbone and model.feature_dim == channels
    x01 = torch.rand(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(
            torch.softmax(model(imagenet(x01)), -1), port(port_input(x01)), atol=1e-5, rtol=1e-4
        )
    torch.testing.assert_close(model.head[1].weight, port.classifier[2].weight)


class _Yunxiaoshi(nn.Module):
    """yunxiaoshi model/model.py: torchvision VGG16 `.features` -> flatten (25088) ->
    Dropout(0.75)-Linear-Softmax."""

    def __init__(self):
        super().__init__()
        import torchvision

        self.features = torchvision.models.vgg16(weights=None).features
        self.classifier = nn.Sequential(nn.Dropout(0.75), nn.Linear(25088, 10), nn.Softmax(dim=1))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def test_yunxiaoshi_checkpoint_loads_and_needs_224_px(tmp_path):
    torch.manual_seed(3)
    port = nima._materialise(_Yunxiaoshi).eval()
    state = port.state_dict()
    assert tuple(state["classifier.1.weight"].shape) == (10, 25088)
    assert "features.28.weight" in state and "features.30.weight" not in state  # pools: no keys
    path = tmp_path / "epoch-34.pth"
    torch.save(state, path)

    model = nima.build(weights={"auto": path}, **config("paper")).eval()
    assert model.backbone_name == "yunxiaoshi_vgg16" and model.feature_dim == 25088
    x01 = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(
            torch.softmax(model(imagenet(x01)), -1), port(imagenet(x01)), atol=1e-5, rtol=1e-4
        )
    with pytest.raises(UserError, match=r"epoch-34\.pth.*head\.1\.weight.*img_size must be 224"):
        nima.build(weights={"auto": path}, **config("cpu"))


def test_truskovskiyk_checkpoint_loads_with_the_ports_key_names(tmp_path):
    torch.manual_seed(4)
    base = nima._truskovskiyk_mobilenet_v2()
    base[0].append(nn.AvgPool2d(64 // 32))  # the port's features end with AvgPool2d(size // 32)
    port = nn.Module()
    port.base_model = base
    port.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.75), nn.Linear(1280, 10), nn.Softmax(dim=1))
    state = port.state_dict()
    # truskovskiyk/nima.pytorch@v1 nima/mobile_net_v2.py: the t=1 block keeps its 1x1 expansion
    expected = {
        "base_model.0.0.0.weight": (32, 3, 3, 3),
        "base_model.0.1.conv.0.weight": (32, 32, 1, 1),
        "base_model.0.1.conv.3.weight": (32, 1, 3, 3),
        "base_model.0.1.conv.6.weight": (16, 32, 1, 1),
        "base_model.0.2.conv.0.weight": (96, 16, 1, 1),
        "base_model.0.17.conv.6.weight": (320, 960, 1, 1),
        "base_model.0.18.0.weight": (1280, 320, 1, 1),
        "base_model.0.18.1.running_var": (1280,),
        "head.2.weight": (10, 1280),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert sum(k.endswith("weight") and v.dim() == 4 for k, v in state.items()) == 1 + 17 * 3 + 1
    path = tmp_path / "pretrain-model.pth"
    torch.save(state, path)

    fresh = nima.build(backbone="truskovskiyk_mobilenet_v2")
    model = nima.build(weights={"auto": path}, **config("paper")).eval()
    assert model.backbone_name == "truskovskiyk_mobilenet_v2"
    assert _changed(fresh, model, "backbone.0.18.0.weight")
    x01 = torch.rand(2, 3, 64, 64)
    port.eval()
    with torch.no_grad():
        reference = port.head(port.base_model(imagenet(x01)).flatten(1))
        torch.testing.assert_close(
            torch.softmax(model(imagenet(x01)), -1), reference, atol=1e-5, rtol=1e-4
        )


def _cadene_file(path, old_format: bool = False) -> dict:
    """A BN-Inception ImageNet file in Cadene's layout: backbone names + last_linear (1000)."""
    torch.manual_seed(5)
    state = nima.BNInception().state_dict()
    state = {k: v for k, v in state.items() if "num_batches" not in k}
    for k, v in state.items():
        if k.endswith(("running_mean", "bias")):
            v.uniform_(-0.2, 0.2)
        elif k.endswith("running_var"):
            v.uniform_(0.5, 1.5)
        if old_format and "_bn." in k:  # bn_inception-239d2248.pth stores BN tensors as (1, C)
            state[k] = v[None]
    state["last_linear.weight"] = torch.randn(1000, 1024)
    state["last_linear.bias"] = torch.randn(1000)
    torch.save(state, path)
    return state


@pytest.mark.parametrize("part, old_format", [("backbone", False), ("auto", True)])
def test_bn_inception_imagenet_file_loads_into_the_backbone(
    tmp_path, part, old_format, paper_model
):
    path = tmp_path / "bn_inception-52deb4733.pth"
    state = _cadene_file(path, old_format)
    fresh = paper_model
    model = nima.build(weights={part: path}, **config("paper"))
    own = model.backbone.state_dict()
    for key in ("conv1_7x7_s2.weight", "inception_4e_3x3_bn.running_mean", "inception_5b_1x1.bias"):
        torch.testing.assert_close(own[key], state[key].reshape(own[key].shape))
        assert _changed(fresh, model, f"backbone.{key}")
    assert model.head[1].weight.shape == (10, 1024)  # the 1000-way last_linear is not loaded
    expected_bias = 255 * torch.tensor([0.406, 0.456, 0.485]) - torch.tensor([104.0, 117, 128])
    torch.testing.assert_close(model.input_bias, expected_bias)  # BGR 0-255 convention


def test_own_state_dict_round_trips(tmp_path):
    torch.manual_seed(6)
    source = nima.build(**config("smoke"))
    source.set_input_convention("inception")
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)
    loaded = nima.build(weights={"auto": path}, **config("smoke")).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source.eval()(x))


def test_key_mapping_by_hand(tmp_path):
    t = torch.zeros(1)
    path = tmp_path / "wrapped.pth"
    torch.save(
        {"state_dict": {"module.features.0.weight": t, "module.classifier.1.weight": t}}, path
    )
    state = read_state_dict(path)
    assert set(state) == {"features.0.weight", "classifier.1.weight"}
    layout = nima._layout_of(set(state))
    assert layout.name == "yunxiaoshi_nima_vgg16"
    assert set(nima.to_model_keys(state, layout)) == {"backbone.0.weight", "head.1.weight"}
    pyiqa = {"base_model.features_0.weight": t, "classifier.2.weight": t}
    layout = nima._layout_of(set(pyiqa))
    assert set(nima.to_model_keys(pyiqa, layout)) == {"backbone.features_0.weight", "head.1.weight"}
    trus = {"base_model.0.0.0.weight": t, "head.2.weight": t}
    layout = nima._layout_of(set(trus))
    assert set(nima.to_model_keys(trus, layout)) == {"backbone.0.0.0.weight", "head.1.weight"}
    cadene = {"conv1_7x7_s2.weight": t, "inception_3a_1x1.weight": t, "last_linear.weight": t}
    layout = nima._layout_of(set(cadene))
    assert nima.to_model_keys(cadene, layout).keys() == {
        "backbone.conv1_7x7_s2.weight",
        "backbone.inception_3a_1x1.weight",
    }


def test_wrong_files_are_one_line_user_errors_naming_the_file(tmp_path):
    unknown = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, unknown)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    pyiqa_like = tmp_path / "pyiqa.pth"
    torch.save({"params": {"base_model.features_0.weight": torch.zeros(1),
                           "classifier.2.weight": torch.zeros(10, 512)}}, pyiqa_like)  # fmt: skip
    cadene = tmp_path / "bn_inception.pth"
    _cadene_file(cadene)
    cases = [
        ({"auto": unknown}, "paper", "resnet.pth"),
        ({"auto": garbage}, "paper", "garbage.pth"),
        ({"backbone": pyiqa_like}, "paper", "pyiqa.pth"),  # not a BN-Inception ImageNet file
        ({"auto": pyiqa_like}, "paper", "pyiqa.pth"),  # keys missing
        ({"auto": cadene}, "smoke", "bn_inception.pth"),  # shapes: the smoke net is narrower
    ]
    for weights, profile, name in cases:
        with pytest.raises(UserError) as err:
            nima.build(weights=weights, **config(profile))
        message = str(err.value)
        assert name in message and "\n" not in message, message
    with pytest.raises(UserError, match="unknown weights part 'theme'"):
        create_model("nima", "smoke", weights={"theme": cadene})
