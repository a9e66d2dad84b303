"""HLA-GCN ("HGCN"): adjacency by hand, the surface at every profile, the paper's size, batch
independence, the aspect ratio, and weights in the public layouts."""

import hashlib
import pickle

import numpy as np
import pytest
import torch
import torchvision

from baselines import create_model
from baselines.hgcn import BACKBONE_PREFIXES, HLAGCN, build, load_weights, spatial_adjacency
from baselines.registry import HARNESS_KEYS, model_config
from iaa_common import UserError

RESERVED = HARNESS_KEYS


def _config(profile, **overrides):
    cfg = {k: v for k, v in model_config("hgcn", profile).items() if k not in RESERVED}
    return {**cfg, **overrides}


def _model(profile, seed=0, **overrides):
    torch.manual_seed(seed)
    return build(**_config(profile, **overrides))


# ---- spatial adjacency, 2 x 2 nodes, by hand --------------------------------------------------
# Nodes row-major: 0 = (0,0), 1 = (0,1), 2 = (1,0), 3 = (1,1). d = sqrt(r^2 drow^2 + dcol^2),
# A = (rowmax - d) / rowsum.
# r = 2: row 0 distances [0, 1, 2, sqrt5]; rowmax sqrt5 = 2.236068;
#        rowmax - d = [2.236068, 1.236068, 0.236068, 0], sum 3.708204
#        -> [0.603006, 0.333333, 0.063661, 0]. (The row neighbour, node 2, is the far one.)
# r = 1: row 0 distances [0, 1, 1, sqrt2]; rowmax - d = [1.414214, 0.414214, 0.414214, 0],
#        sum 2.242641 -> [0.630602, 0.184699, 0.184699, 0].
R2 = [
    [0.603006, 0.333333, 0.063661, 0.0],
    [0.333333, 0.603006, 0.0, 0.063661],
    [0.063661, 0.0, 0.603006, 0.333333],
    [0.0, 0.063661, 0.333333, 0.603006],
]
R1 = [
    [0.630602, 0.184699, 0.184699, 0.0],
    [0.184699, 0.630602, 0.0, 0.184699],
    [0.184699, 0.0, 0.630602, 0.184699],
    [0.0, 0.184699, 0.184699, 0.630602],
]


def test_spatial_adjacency_2x2_by_hand():
    adj = spatial_adjacency(torch.tensor([2.0, 1.0]), 2, 2)
    assert adj.shape == (2, 4, 4)
    torch.testing.assert_close(adj, torch.tensor([R2, R1]), atol=2e-6, rtol=0)


def test_aspect_scales_the_row_difference_on_a_wide_map():
    # a 2 x 3 map: node 0 = (0,0), its column neighbour (0,1) is node 1, its row neighbour
    # (1,0) is node 3. r = W/H multiplies the row difference, so r = 2 puts the row neighbour
    # farther away (smaller weight) and r = 0.5 the column neighbour.
    adj = spatial_adjacency(torch.tensor([2.0, 0.5, 1.0]), 2, 3)
    assert adj[0, 0, 3] < adj[0, 0, 1]
    assert adj[1, 0, 3] > adj[1, 0, 1]
    assert adj[2, 0, 3] == adj[2, 0, 1]
    torch.testing.assert_close(adj.sum(-1), torch.ones(3, 6))  # row-normalised
    assert (adj[:, 0, 5] == 0).all()  # the farthest node of row 0 gets 0


# ---- the surface -------------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "side"), [("smoke", 2), ("cpu", 3)])
def test_surface_and_node_count(profile, side):
    model = _model(profile)
    s = _config(profile)["img_size"]
    x = torch.randn(3, 3, s, s)
    assert model.backbone(x).shape[-2:] == (side, side)  # nodes follow the map: side^2
    z = model.forward_features(x, aspect=torch.tensor([1.0, 1.5, 0.75]))
    assert z.shape == (3, model.feature_dim) == (3, 2 * _config(profile)["gcn_dim"])
    logits = model.forward_head(z)
    assert logits.shape == (3, 10)
    assert model.needs == ("aspect",)
    logits.sum().backward()  # trains end to end
    assert model.conv1.weight.grad is not None and model.lagcn1.gcns[0].W.weight.grad is not None


def test_forward_head_is_the_log_of_the_averaged_distribution():
    model = _model("smoke")
    z = torch.randn(5, model.feature_dim) * 3
    d = model.gcn_dim
    a = z[:, :d] @ model.aesfc1.weight.T + model.aesfc1.bias
    b = z[:, d:] @ model.aesfc2.weight.T + model.aesfc2.bias
    expected = (torch.softmax(a, 1) + torch.softmax(b, 1)) / 2
    torch.testing.assert_close(torch.softmax(model.forward_head(z), 1), expected)
    torch.testing.assert_close(model.forward_head(z).exp(), expected)


def test_missing_aspect_is_an_error():
    model = _model("smoke")
    with pytest.raises(TypeError, match="aspect"):
        model(torch.randn(2, 3, 32, 32))


def test_paper_size_and_forward():
    model = _model("paper")
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 40.33e6) / 40.33e6 < 0.02, n  # BASELINES.md: 40.33M with gcnlayer 3
    assert model.lagcn2.conv_proj.out_channels == 25 and len(model.lagcn1.gcns) == 3
    model.eval()
    maps = []
    model.layer4.register_forward_hook(lambda module, inputs, output: maps.append(output.shape))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 300, 300), aspect=torch.tensor([1.0, 1.5]))
    assert maps == [(2, 2048, 10, 10)]  # 100 spatial nodes at 300 px
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.fixture(scope="module")
def one_block():
    return HLAGCN(img_size=300, gcn_blocks=1)


def test_one_gcn_block_is_the_smaller_published_count(one_block):
    n = sum(p.numel() for p in one_block.parameters())
    assert abs(n - 34.04e6) / 34.04e6 < 0.02, n  # BASELINES.md: 34.04M with gcnlayer 1


def test_paper_backbone_has_torchvision_resnet50_layout(one_block):
    theirs = torchvision.models.resnet50().state_dict()
    ours = {
        k: v.shape for k, v in one_block.state_dict().items() if k.startswith(BACKBONE_PREFIXES)
    }
    assert ours == {k: v.shape for k, v in theirs.items() if not k.startswith("fc.")}


# ---- batch independence and the aspect ratio ----------------------------------------------------


def test_eval_output_does_not_depend_on_the_batch():
    model = _model("cpu").eval()
    torch.manual_seed(1)
    x, aspect = torch.randn(5, 3, 48, 48), torch.tensor([1.0, 1.5, 0.6, 2.0, 1.2])
    with torch.no_grad():
        full = model(x, aspect=aspect)
        alone = model(x[1:2], aspect=aspect[1:2])
        shuffled = model(x[[3, 1, 0]], aspect=aspect[[3, 1, 0]])
    torch.testing.assert_close(alone[0], full[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shuffled, full[[3, 1, 0]], atol=1e-5, rtol=1e-5)


def test_aspect_ratio_changes_the_output():
    model = _model("cpu").eval()
    torch.manual_seed(2)
    x = torch.randn(1, 3, 48, 48).repeat(2, 1, 1, 1)  # the same image twice
    with torch.no_grad():
        out = model(x, aspect=torch.tensor([1.0, 2.0]))
        again = model(x, aspect=torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(again[0], again[1])  # same image, same ratio: same output
    assert (out[0] - out[1]).abs().max() > 1e-4


# ---- weights --------------------------------------------------------------------------------


def _random_like(state, seed):
    g = torch.Generator().manual_seed(seed)
    return {
        k: (torch.rand(v.shape, generator=g) + 0.5) if v.is_floating_point() else v.clone()
        for k, v in state.items()
    }


def _jittor_save(obj, path):
    """What jittor.save writes for a path not ending in .pth/.pt/.bin: numpy pickle + sha1 +
    tag."""
    data = pickle.dumps(obj, 4)
    path.write_bytes(data + hashlib.sha1(data).digest() + b"HCAJSLHD")


def _official_checkpoint(model, seed):
    """A whole HLA-GCN under the official names, as Jittor keeps it: no num_batches_tracked,
    plus each LA-GCN1 block's constant distance grids."""
    state = _random_like(model.state_dict(), seed)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    for i in range(len(model.lagcn1.gcns)):
        state[f"lagcn1.gcns.{i}.x_square"] = torch.zeros(100, 100)
        state[f"lagcn1.gcns.{i}.y_square"] = torch.zeros(100, 100)
    return state


def _assert_loaded(model, expected, prefixes):
    got = model.state_dict()
    checked = 0
    for k, v in expected.items():
        if k.startswith(prefixes) and k in got and v.is_floating_point():
            torch.testing.assert_close(got[k], v.to(got[k].dtype), msg=k)
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("writer", ["torch", "jittor", "plain_pickle"])
def test_official_checkpoint_loads(tmp_path, writer):
    fresh = _model("smoke")
    state = _official_checkpoint(fresh, seed=3)
    ckpt = {"epoch": 20, "arch": "resnet50_HLAGCN", "val": [0.07, 78.5], "state_dict": state}
    path = tmp_path / "checkpoint_epoch_020.pth.tar"
    if writer == "torch":
        torch.save(ckpt, path)
    else:
        ckpt["state_dict"] = {k: v.numpy() for k, v in state.items()}
        ckpt["val"] = [np.array([0.07], dtype=np.float32), np.float64(78.5)]
        if writer == "jittor":
            _jittor_save(ckpt, path)
        else:
            path.write_bytes(pickle.dumps(ckpt, 4))
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    loaded = build(weights={"auto": path}, **_config("smoke"))
    changed = [k for k, v in loaded.state_dict().items() if not torch.equal(v, before[k])]
    assert "aesfc2.weight" in changed and "lagcn2.blocker.weight" in changed
    _assert_loaded(loaded, state, ("",))


def test_imagenet_backbone_loads_in_torchvision_layout(tmp_path):
    fresh = _model("smoke", seed=4)
    prefixes = ("conv1.", "bn1.", "layer")  # torchvision's names (checked above at paper size)
    state = _random_like({k: v for k, v in fresh.state_dict().items() if k.startswith(prefixes)}, 5)
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 64), torch.randn(1000)
    path = tmp_path / "resnet50.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)

    model = _model("smoke", seed=4)
    load_weights(model, "backbone", path)
    assert not torch.equal(model.conv1.weight, fresh.conv1.weight)
    _assert_loaded(model, state, prefixes)
    assert torch.equal(model.lagcn1.gcns[0].W.weight, fresh.lagcn1.gcns[0].W.weight)

    model = create_model("hgcn", "smoke", weights=path)  # the registry: a bare file is `auto`
    _assert_loaded(model, state, prefixes)


def test_wrong_files_are_user_errors_naming_the_file(tmp_path):
    unknown = tmp_path / "unknown_layout.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, unknown)
    with pytest.raises(UserError, match="unknown_layout.pth.*unrecognised layout"):
        build(weights={"auto": unknown}, **_config("smoke"))

    aadb = tmp_path / "aadb_5_bins.pth"  # the official AADB model: heads with 5 bins
    state = _model("smoke").state_dict()
    for head in ("aesfc1", "aesfc2"):
        state[f"{head}.weight"], state[f"{head}.bias"] = torch.zeros(5, 16), torch.zeros(5)
    torch.save(state, aadb)
    with pytest.raises(UserError, match=r"aadb_5_bins.pth.*aesfc1.weight has shape \(5, 16\)"):
        build(weights={"auto": aadb}, **_config("smoke"))

    other_profile = tmp_path / "cpu_profile.pth"  # another profile: other modules
    torch.save(_model("cpu").state_dict(), other_profile)
    with pytest.raises(UserError, match="cpu_profile.pth: not an HLA-GCN model for this config"):
        build(weights={"auto": other_profile}, **_config("smoke"))

    partial = tmp_path / "partial.pth"
    state = _model("smoke").state_dict()
    del state["lagcn2.gcn.W.weight"]
    torch.save(state, partial)
    with pytest.raises(UserError, match="partial.pth.*missing.*lagcn2.gcn.W.weight"):
        build(weights={"auto": partial}, **_config("smoke"))

    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    with pytest.raises(UserError, match="notes.txt"):
        build(weights={"auto": text}, **_config("smoke"))

    with pytest.raises(UserError, match="unknown weights part 'theme'"):
        create_model("hgcn", "smoke", weights={"theme": partial})
    with pytest.raises(UserError, match="nothing.pth"):
        build(weights={"backbone": tmp_path / "nothing.pth"}, **_config("smoke"))


def test_jittor_reader_checks_and_refuses_code(tmp_path):
    corrupt = tmp_path / "corrupt.pkl"
    _jittor_save({"conv1.weight": np.zeros(3, np.float32)}, corrupt)
    data = bytearray(corrupt.read_bytes())
    data[5] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(UserError, match="corrupt.pkl.*checksum"):
        build(weights={"auto": corrupt}, **_config("smoke"))

    class Payload:
        def __reduce__(self):
            return (print, ("unpickled code ran",))

    evil = tmp_path / "evil.pkl"
    _jittor_save({"conv1.weight": Payload()}, evil)
    with pytest.raises(UserError, match="evil.pkl.*refused to load the global .*print"):
        build(weights={"auto": evil}, **_config("smoke"))
