"""TANet: surface, parameter count, its two heads, batch (in)dependence and the official batch
form at paper size, the frozen theme net, hand-computed pieces, and weights from files written
in the official layouts (key names and shapes derived here from the official class definitions
in code/AVA/train_nni.py and code/TAD66K/train_nni.py, independently of the model)."""

import math

import pytest
import torch
import torchvision
from torch import nn

from baselines import create_model, tanet
from baselines.registry import HARNESS_KEYS, _registry, model_config, resolve_config
from bench.train.losses import scores
from iaa_common import UserError

REFERENCE_PARAMS, REFERENCE_FROZEN = 13.88e6, 11.36e6  # BASELINES.md


def config(profile: str, **over) -> dict:
    c = {k: v for k, v in model_config("tanet", profile).items() if k not in HARNESS_KEYS}
    return {**c, **over}


def make(profile: str, **over) -> tanet.TANet:
    torch.manual_seed(0)
    return tanet.build(**config(profile, **over))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread, as the harness runs a stage (2 threads on 2 shared cores thrash)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def paper_model():
    return make("paper")


# --- the official layouts, from the official class definitions --------------------------------

MBV2_SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]  # official MobileNetV2: t, c, n, s


def _bn(name, c, tracked=True):
    out = {f"{name}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")}
    if tracked:
        out[f"{name}.num_batches_tracked"] = ()
    return out


def official_mbv2_shapes(prefix: str) -> dict:
    """`MobileNetV2().features` keys: conv_bn(3, 32, 2), InvertedResidual(conv.0-7), conv_1x1_bn."""
    s = {f"{prefix}0.0.weight": (32, 3, 3, 3), **_bn(f"{prefix}0.1", 32)}
    i, cin = 1, 32
    for t, c, n, _ in MBV2_SETTING:
        for _ in range(n):
            mid, p = cin * t, f"{prefix}{i}.conv."
            s |= {p + "0.weight": (mid, cin, 1, 1), **_bn(p + "1", mid)}
            s |= {p + "3.weight": (mid, 1, 3, 3), **_bn(p + "4", mid)}
            s |= {p + "6.weight": (c, mid, 1, 1), **_bn(p + "7", c)}
            i, cin = i + 1, c
    s |= {f"{prefix}{i}.0.weight": (1280, 320, 1, 1), **_bn(f"{prefix}{i}.1", 1280)}
    return s


def official_tanet_shapes(head_out: int = 10) -> dict:
    """TANet().state_dict() of code/AVA (head_out 10) or code/TAD66K (head_out 1)."""
    places = torchvision.models.resnet18(num_classes=365).state_dict()
    s = {f"res365_last.{k}": tuple(v.shape) for k, v in places.items()}
    s |= {"hypernet.last_out_w.weight": (100, 365), "hypernet.last_out_w.bias": (100,)}
    s |= {"hypernet.last_out_b.weight": (1, 365), "hypernet.last_out_b.bias": (1,)}
    s |= {"tygertnet.fc1.weight": (100, 365), "tygertnet.fc1.bias": (100,)}
    s |= {
        **_bn("tygertnet.bn1", 100),
        "tygertnet.relu1.weight": (1,),
        "tygertnet.relu7.weight": (1,),
    }
    s |= official_mbv2_shapes("mobileNet.base_model.0.")
    s |= {"mobileNet.head.2.weight": (10, 1280), "mobileNet.head.2.bias": (10,)}
    s |= {"head_rgb.2.weight": (10, 20736), "head_rgb.2.bias": (10,)}
    s |= {"head.2.weight": (head_out, 30), "head.2.bias": (head_out,)}
    return s


def random_state(shapes: dict, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randint(0, 50, (), dtype=torch.long)
        if shape == ()
        else torch.randn(shape, generator=g)
        for k, shape in shapes.items()
    }


def places365_file(path, num_classes=365, state=None):
    """The official `resnet18_places365.pth.tar`: {'state_dict': {'module.*'}} (2017: no
    num_batches_tracked)."""
    if state is None:
        shapes = {
            k: tuple(v.shape)
            for k, v in torchvision.models.resnet18(num_classes=num_classes).state_dict().items()
            if not k.endswith("num_batches_tracked")
        }
        state = random_state(shapes, seed=2)
    torch.save(
        {
            "epoch": 90,
            "arch": "resnet18",
            "best_prec1": 54.74,
            "state_dict": {f"module.{k}": v for k, v in state.items()},
        },
        path,
    )
    return state


def test_official_release_layout_is_459_keys_and_matches_the_paper_model(paper_model):
    shapes = official_tanet_shapes()
    assert len(shapes) == 459
    ours = {k: tuple(v.shape) for k, v in paper_model.state_dict().items()}
    assert ours == shapes  # the official batch form: no normaliser of ours
    per_image = {
        k: tuple(v.shape) for k, v in make("paper", target_net="per_image").state_dict().items()
    }
    assert sorted(k for k in per_image if k not in shapes) == [
        "tygertnet.bn7.num_batches_tracked",
        "tygertnet.bn7.running_mean",
        "tygertnet.bn7.running_var",
    ]
    scalar = {k: tuple(v.shape) for k, v in make("paper", head="score").state_dict().items()}
    assert scalar == official_tanet_shapes(head_out=1)  # code/TAD66K's TANet


# --- surface, size, speed ----------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_surface(profile):
    m = make(profile).eval()
    s = config(profile)["img_size"]
    x = torch.randn(3, 3, s, s)
    z = m.forward_features(x)
    assert m.feature_dim == 30 and z.shape == (3, 30) and tanet.TANet.needs == ()
    assert m.output == "logits" and m.tygertnet.mode == "per_image"
    assert m.forward_head(z).shape == (3, 10)
    torch.testing.assert_close(m(x), m.forward_head(z))
    # the RGB part of the pooled feature is a softmax; the others are not constrained
    torch.testing.assert_close(z[:, 20:].sum(1), torch.ones(3))


def test_paper_forward_and_parameter_count(paper_model):
    n = sum(p.numel() for p in paper_model.parameters())
    frozen = sum(p.numel() for p in paper_model.parameters() if not p.requires_grad)
    assert abs(n / REFERENCE_PARAMS - 1) < 0.02, n
    assert abs(frozen / REFERENCE_FROZEN - 1) < 0.02, frozen
    assert frozen == sum(p.numel() for p in paper_model.res365_last.parameters())
    paper_model.eval()
    with torch.no_grad():
        out = paper_model(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_registry_sections():
    entry = _registry()["tanet"]
    paper = entry["configs"]["paper"]
    assert (paper["target_net"], paper["head"], paper["pretrained"]) == (
        "batch",
        "logits",
        ["theme"],
    )
    recipe = paper["recipe"]  # code/AVA option.py, train_nni.py
    assert (recipe["optimizer"], recipe["lr"], recipe["batch_size"], recipe["epochs"]) == (
        "adam", 3e-4, 48, 20,
    )  # fmt: skip
    assert (recipe["drop_last"], recipe["eval_batch_size"]) == (False, 48)
    tad66k, _ = resolve_config("tanet", "paper", "tad66k")  # code/TAD66K
    assert tad66k["head"] == "score" and tad66k["target_net"] == "batch"
    assert (tad66k["recipe"]["batch_size"], tad66k["recipe"]["epochs"]) == (40, 200)
    assert entry["configs"]["cpu"]["pretrain"] == {"part": "theme", "epochs": 20}
    assert entry["configs"]["smoke"]["pretrain"] == {"part": "theme", "epochs": 1}
    assert set(entry["configs"]["cpu"]["recipe"]) == {"lr"}  # chosen on validation
    assert "recipe" not in entry["configs"]["smoke"]
    for profile in ("cpu", "smoke"):
        assert config(profile)["theme_classes"] == 10


def test_the_two_heads():
    logits, score = make("smoke"), make("smoke", head="score")
    assert (logits.output, score.output) == ("logits", "score")
    for key, value in score.state_dict().items():  # the same init up to the fusion layer
        if not key.startswith("head.2."):
            assert torch.equal(value, logits.state_dict()[key]), key
    assert score.head[2].weight.shape == (1, 30)
    with torch.no_grad():  # Linear(30, 1) + sigmoid: bias log 3, no weight -> 3 / (1 + 3)
        score.head[2].weight.zero_()
        score.head[2].bias.fill_(math.log(3))
        out = score.eval()(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(out, torch.full((2, 1), 0.75))
    torch.testing.assert_close(scores(out, score.output), torch.tensor([7.5, 7.5]))
    with pytest.raises(ValueError, match="TANet head must be one of logits, score"):
        make("smoke", head="softmax")


# --- batch (in)dependence ------------------------------------------------------------------------


def test_eval_output_of_a_sample_does_not_depend_on_its_batch():
    m = make("smoke").eval()
    torch.manual_seed(3)
    x = torch.randn(48, 3, 32, 32)
    with torch.no_grad():
        full = m(x)
        seven = m(x[:7])
        one = m(x[:1])
        shuffled = m(x.flip(0)).flip(0)
    torch.testing.assert_close(seven, full[:7], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(one, full[:1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(shuffled, full, rtol=1e-5, atol=1e-6)


def test_per_image_training_needs_two_samples_like_any_batchnorm():
    m = make("smoke").train()
    x = torch.randn(7, 3, 32, 32)
    assert m(x).shape == (7, 10)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        m(x[:1])


ONE_IMAGE = r"target_net = 'batch'\) normalises over the batch: a batch of one image"


def test_batch_mode_reproduces_the_official_coupling():
    m = make("smoke", target_net="batch").eval()
    torch.manual_seed(4)
    x = torch.randn(48, 3, 32, 32)
    with torch.no_grad():
        full, seven = m.forward_features(x), m.forward_features(x[:7])
        with pytest.raises(ValueError, match=ONE_IMAGE):
            m(x[:1])  # the official code fails at B = 1, in eval too
    # the aesthetics and RGB parts are per-sample; the theme part depends on the batch
    torch.testing.assert_close(seven[:, :10], full[:7, :10], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(seven[:, 20:], full[:7, 20:], rtol=1e-5, atol=1e-6)
    assert (seven[:, 10:20] - full[:7, 10:20]).abs().max() > 1e-3


def test_paper_model_in_the_official_batch_form_trains_and_evaluates(paper_model):
    """Under a second (one thread): a training step and an evaluation at 224 px, batch 2."""
    assert paper_model.tygertnet.mode == "batch" and not hasattr(paper_model.tygertnet, "bn7")
    torch.manual_seed(11)
    x = torch.randn(2, 3, 224, 224)
    paper_model.train()
    out = paper_model(x)
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in paper_model.parameters() if p.requires_grad]
    assert out.shape == (2, 10) and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert paper_model.hypernet.last_out_w.weight.grad.abs().sum() > 0  # through the B x B form
    paper_model.zero_grad()
    with pytest.raises(ValueError, match=ONE_IMAGE):
        paper_model(x[:1])  # a last training batch of one image
    paper_model.eval()
    with torch.no_grad():
        assert torch.isfinite(paper_model(x)).all()
        with pytest.raises(ValueError, match=ONE_IMAGE):
            paper_model(x[:1])


def official_l3(h, w, b, relu7):
    """The official TargetNet after L2, in the official code's operations."""
    q = nn.functional.linear(h, w, b)  # bias (B, 1)
    q = nn.BatchNorm1d(q.shape[0])(q)  # fresh, training mode
    q = relu7(q)
    return nn.AdaptiveAvgPool2d((10, 1))(q.unsqueeze(2)).squeeze(2)


@pytest.mark.parametrize("batch", [7, 12, 48])
def test_batch_target_net_equals_the_official_operations(batch):
    torch.manual_seed(5)
    net = tanet._TargetNet(10, 20, "batch").eval()  # eval: dropout off, bn1 per-sample
    with torch.no_grad():
        net.relu7.weight.fill_(0.1)
    t, w, b = torch.randn(batch, 10), torch.randn(batch, 20), torch.randn(batch, 1)
    h = net.relu1(net.bn1(net.fc1(t)))
    torch.testing.assert_close(net(t, w, b), official_l3(h, w, b, net.relu7))


def test_per_image_target_by_hand():
    h = torch.ones(1, 20)
    w = torch.arange(20.0).unsqueeze(0)
    b = torch.tensor([[10.0]])
    out = tanet.per_image_target(h, w, b)
    # blocks of two hidden units: 0+1, 2+3, ..., 18+19, each + 10/10
    assert out.tolist() == [[2.0, 6.0, 10.0, 14.0, 18.0, 22.0, 26.0, 30.0, 34.0, 38.0]]
    assert out.sum().item() == 200.0  # = h . W + b = 190 + 10


def test_per_image_target_is_the_diagonal_of_the_official_matrix():
    torch.manual_seed(6)
    h, w, b = torch.randn(5, 30), torch.randn(5, 30), torch.randn(5, 1)
    diag = nn.functional.linear(h, w, b).diagonal()
    torch.testing.assert_close(tanet.per_image_target(h, w, b).sum(1), diag)


def test_rgb_similarity_by_hand():
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0, :, :2] = 1.0  # left half red (1, 0, 0)
    x[0, 0, :2, 2:] = 1.0
    x[0, 1, :2, 2:] = 1.0  # top right yellow (1, 1, 0); bottom right black
    sim = tanet.rgb_similarity(x, 2)[0]  # patches: 0 red, 1 yellow, 2 red, 3 black
    r = 2**-0.5
    expected = torch.tensor(
        [[1, r, 1, 0], [r, 1, r, 0], [1, r, 1, 0], [0, 0, 0, 0]], dtype=torch.float32
    )
    torch.testing.assert_close(sim, expected)
    assert tanet.rgb_similarity(torch.randn(2, 3, 48, 48), 12).shape == (2, 144, 144)


# --- the frozen theme network --------------------------------------------------------------------


def test_theme_net_gets_no_gradient_and_keeps_its_statistics():
    m = make("smoke")
    m.train()
    assert not m.res365_last.training and m.mobileNet.training
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    x = torch.randn(8, 3, 32, 32) * 3 + 1  # statistics far from the initial running ones
    loss = m(x).logsumexp(1).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = m.state_dict()
    assert all(p.grad is None for p in m.res365_last.parameters())
    for k, v in before.items():
        if k.startswith("res365_last."):
            assert torch.equal(after[k], v), k
    # the same step did move the trainable parts and the other BatchNorms
    assert not torch.equal(
        after["mobileNet.base_model.0.0.1.running_mean"],
        before["mobileNet.base_model.0.0.1.running_mean"],
    )
    assert not torch.equal(
        after["hypernet.last_out_w.weight"], before["hypernet.last_out_w.weight"]
    )
    assert not torch.equal(after["tygertnet.bn7.running_var"], before["tygertnet.bn7.running_var"])


# --- weights -----------------------------------------------------------------------------------


def test_theme_network_state_dict_loads_as_part_theme(tmp_path):
    torch.manual_seed(7)
    theme = tanet.theme_network(**config("smoke")).eval()
    with torch.no_grad():
        for mod in theme.modules():  # non-trivial BN statistics
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-1, 1)
                mod.running_var.uniform_(0.5, 2)
    x = torch.randn(4, 3, 32, 32)
    plain, official = tmp_path / "theme.pth", tmp_path / "theme.pth.tar"
    torch.save(theme.state_dict(), plain)
    places365_file(official, state=theme.state_dict())  # the official wrapper and prefix
    fresh = make("smoke")
    assert not torch.allclose(fresh.res365_last(x), theme(x))
    for path in (plain, official):
        m = tanet.build({"theme": path}, **config("smoke")).train()  # train(): theme stays eval
        torch.testing.assert_close(m.res365_last(x), theme(x))
        assert not any(p.requires_grad for p in m.res365_last.parameters())


def test_places365_file_loads_into_the_paper_model(tmp_path, paper_model):
    path = tmp_path / "resnet18_places365.pth.tar"
    state = places365_file(path)
    for part in ("theme", "auto"):
        tanet.load_weights(paper_model, part, path)
        own = paper_model.state_dict()
        for k, v in state.items():
            assert torch.equal(own[f"res365_last.{k}"], v), k


def test_places365_file_into_a_10_class_config_is_a_user_error(tmp_path):
    path = tmp_path / "resnet18_places365.pth.tar"
    places365_file(path)
    with pytest.raises(
        UserError, match=r"resnet18_places365\.pth\.tar: not a TANet .*first: unexpected key"
    ):
        tanet.build({"theme": path}, **config("smoke"))  # one block per layer: extra keys
    small365 = tmp_path / "small365.pth.tar"
    places365_file(
        small365, state=tanet.theme_network(**config("smoke", theme_classes=365)).state_dict()
    )
    with pytest.raises(
        UserError,
        match=r"small365\.pth\.tar: not a TANet .*first: res365_last\.fc\.weight has shape"
        r" \(365, 16\), expected \(10, 16\)",
    ):
        tanet.build({"theme": small365}, **config("smoke"))


def test_released_ava_state_dict_loads(tmp_path, paper_model):
    path = tmp_path / "SRCC_758_LCC_765.pth"
    state = random_state(official_tanet_shapes(), seed=8)
    torch.save(state, path)
    tanet.load_weights(paper_model, "auto", path)
    own = paper_model.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k
    per_image = make("paper", target_net="per_image")
    tanet.load_weights(per_image, "auto", path)
    assert torch.equal(per_image.state_dict()["tygertnet.bn7.running_var"], torch.ones(10))


def test_released_tad66k_state_dict_loads_into_the_score_head(tmp_path, paper_model):
    path = tmp_path / "SRCC_513_LCC_531_MSE_016.pth"
    state = random_state(official_tanet_shapes(head_out=1), seed=9)
    torch.save(state, path)
    scalar = make("paper", head="score")
    tanet.load_weights(scalar, "auto", path)
    own = scalar.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k
    with pytest.raises(
        UserError,
        match=r"SRCC_513_LCC_531_MSE_016\.pth: its fusion head Linear\(30, 1\) does not fit "
        r"head 'logits'",
    ):
        tanet.load_weights(paper_model, "auto", path)


def test_imagenet_mobilenet_v2_loads_as_backbone(tmp_path, paper_model):
    shapes = {
        k.replace("mobileNet.base_model.0.", "features."): v
        for k, v in official_mbv2_shapes("mobileNet.base_model.0.").items()
    }
    shapes |= {"classifier.1.weight": (1000, 1280), "classifier.1.bias": (1000,)}
    state = random_state(shapes, seed=10)
    for part in ("backbone", "auto"):
        path = tmp_path / f"mobilenetv2_{part}.pth.tar"
        torch.save(state, path)
        tanet.load_weights(paper_model, part, path)
        own = paper_model.state_dict()
        for k, v in state.items():
            if k.startswith("features."):
                assert torch.equal(own[k.replace("features.", "mobileNet.base_model.0.")], v), k
    # nima.pytorch's layout (base_model.0.*, head.2): the trunk is loaded
    nima = {
        k.replace("features.", "base_model.0."): -v
        for k, v in state.items()
        if k.startswith("features.")
    }
    torch.save(nima, tmp_path / "nima.pth")
    tanet.load_weights(paper_model, "backbone", tmp_path / "nima.pth")
    assert torch.equal(
        paper_model.state_dict()["mobileNet.base_model.0.18.0.weight"],
        nima["base_model.0.18.0.weight"],
    )


def test_torchvision_mobilenet_v2_is_refused(tmp_path):
    path = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)
    with pytest.raises(UserError, match=r"mobilenet_v2-b0353104\.pth: torchvision"):
        tanet.build({"backbone": path}, **config("smoke"))


def test_wrong_files_and_parts_are_user_errors(tmp_path):
    junk = tmp_path / "junk.pth"
    torch.save({"foo.weight": torch.zeros(2)}, junk)
    with pytest.raises(UserError, match=r"junk\.pth: unrecognised layout"):
        tanet.build({"auto": junk}, **config("smoke"))
    with pytest.raises(UserError, match=r"junk\.pth: not a theme layout"):
        tanet.build({"theme": junk}, **config("smoke"))
    with pytest.raises(UserError, match=r"junk\.pth: unknown weights part 'head'"):
        create_model("tanet", "smoke", weights={"head": junk})
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    with pytest.raises(UserError, match=r"notes\.txt: cannot read"):
        tanet.build({"auto": text}, **config("smoke"))
    theme = tanet.theme_network(**config("smoke")).state_dict()
    del theme["layer4.0.conv2.weight"]
    torch.save(theme, tmp_path / "partial.pth")
    with pytest.raises(
        UserError, match=r"partial\.pth: not .*missing key res365_last\.layer4\.0\.conv2"
    ):
        tanet.build({"theme": tmp_path / "partial.pth"}, **config("smoke"))


def test_official_to_tanet_mapping():
    w = torch.zeros(1)
    theme = tanet.official_to_tanet(
        {"conv1.weight": w, "fc.weight": w, "layer4.0.conv1.weight": w}, "theme"
    )
    assert sorted(theme) == [
        "res365_last.conv1.weight",
        "res365_last.fc.weight",
        "res365_last.layer4.0.conv1.weight",
    ]
    backbone = tanet.official_to_tanet(
        {"features.0.0.weight": w, "features.18.1.bias": w, "classifier.1.weight": w}, "auto"
    )
    assert sorted(backbone) == [
        "mobileNet.base_model.0.0.0.weight",
        "mobileNet.base_model.0.18.1.bias",
    ]
    nima = tanet.official_to_tanet({"base_model.0.0.0.weight": w, "head.2.weight": w}, "backbone")
    assert list(nima) == ["mobileNet.base_model.0.0.0.weight"]
    release = {
        "hypernet.last_out_w.weight": w,
        "head.2.weight": torch.zeros(10, 30),
        "res365_last.fc.weight": w,
        "mobileNet.base_model.0.0.0.weight": w,
    }
    assert tanet.official_to_tanet(release, "auto") == release
    assert list(tanet.official_to_tanet(release, "theme")) == ["res365_last.fc.weight"]
    tad66k = {**release, "head.2.weight": torch.zeros(1, 30)}
    assert tanet.official_to_tanet(tad66k, "auto") == tad66k
