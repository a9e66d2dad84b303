"""EAT (baselines/eat.py): gating and sampling by hand, surface, size, its three heads, batch
independence, and loading files written in the official layouts (names and shapes from the
official classes)."""

import math
import warnings

import pytest
import torch

from baselines import create_model, eat
from baselines.registry import HARNESS_KEYS, model_config, resolve_config
from bench.train.losses import scores
from iaa_common import UserError

PAPER_PARAMS = 86.88e6  # BASELINES.md, from the official module shapes


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread: the machine's cores are shared, and small tensors gain nothing from two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(profile: str, **over) -> dict:
    cfg = {k: v for k, v in model_config("eat", profile).items() if k not in HARNESS_KEYS}
    return cfg | over


def official_shapes(cfg: dict, n_out: int = 10, interest: bool = True) -> dict[str, tuple]:
    """Key -> shape of the official `DAT` state dict (AVA/models/dat.py, dat_blocks.py),
    written out from the official module attributes, buffers included."""
    dims, depths, heads, windows = cfg["dims"], cfg["depths"], cfg["heads"], cfg["window_sizes"]
    p = cfg["patch_size"]
    out = {
        "patch_proj.0.weight": (dims[0], 3, p, p),
        "patch_proj.0.bias": (dims[0],),
        "patch_proj.1.norm.weight": (dims[0],),
        "patch_proj.1.norm.bias": (dims[0],),
    }
    fmap = cfg["img_size"] // p
    for i in range(4):
        c, stage = dims[i], f"stages.{i}."
        for j in range(2 * depths[i]):
            out[f"{stage}layer_norms.{j}.norm.weight"] = (c,)
            out[f"{stage}layer_norms.{j}.norm.bias"] = (c,)
        for j in range(depths[i]):
            mlp, a, w = f"{stage}mlps.{j}.chunk.", f"{stage}attns.{j}.", windows[i]
            out |= {
                mlp + "linear1.weight": (4 * c, c),
                mlp + "linear1.bias": (4 * c,),
                mlp + "linear2.weight": (c, 4 * c),
                mlp + "linear2.bias": (c,),
            }
            kind = cfg["stage_spec"][i][j]
            if kind in "LS":
                out |= {
                    a + "proj_qkv.weight": (3 * c, c),
                    a + "proj_qkv.bias": (3 * c,),
                    a + "proj_out.weight": (c, c),
                    a + "proj_out.bias": (c,),
                    a + "relative_position_bias_table": ((2 * w - 1) ** 2, heads[i]),
                    a + "relative_position_index": (w * w, w * w),
                }
                if kind == "S":
                    out[a + "attn_mask"] = ((fmap // w) ** 2, w * w, w * w)
                continue
            gc, k = c // cfg["groups"][i], cfg["offset_kernel_sizes"][i]
            out |= {
                a + "conv_offset.0.weight": (gc, 1, k, k),
                a + "conv_offset.0.bias": (gc,),
                a + "conv_offset.1.norm.weight": (gc,),
                a + "conv_offset.1.norm.bias": (gc,),
                a + "conv_offset.3.weight": (2, gc, 1, 1),
                a + "rpe_table": (heads[i], 2 * fmap - 1, 2 * fmap - 1),
            }
            for name in ("q", "k", "v", "out"):
                out[a + f"proj_{name}.weight"] = (c, c, 1, 1)
                out[a + f"proj_{name}.bias"] = (c,)
            if interest:
                out[a + "ref_point14.weight"] = (2, c, 1, 1)
                out[a + "ref_point14.bias"] = (2,)
        if i < 3:
            out[f"down_projs.{i}.0.weight"] = (dims[i + 1], dims[i], 2, 2)
            out[f"down_projs.{i}.1.norm.weight"] = (dims[i + 1],)
            out[f"down_projs.{i}.1.norm.bias"] = (dims[i + 1],)
        fmap //= 2
    return out | {
        "cls_norm.norm.weight": (dims[-1],),
        "cls_norm.norm.bias": (dims[-1],),
        "cls_head.weight": (n_out, dims[-1]),
        "cls_head.bias": (n_out,),
    }


def _random_state(shapes: dict, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        if key.endswith("relative_position_index"):
            out[key] = torch.randint(0, 9, shape, generator=g)  # int64 buffer, as saved
        else:
            out[key] = torch.randn(shape, generator=g)
    return out


# ---- EAT's two changes, by hand ---------------------------------------------------------------


def test_gate_by_hand():
    offset = torch.tensor(
        [[0.2, -0.1], [0.3, 0.4], [-0.5, 0.1], [0.0, 0.2]], requires_grad=True
    )  # (y, x) rows
    reference = torch.tensor([[0.5, -0.5], [0.5, -0.5], [-0.1, -0.1], [0.3, 0.3]])
    gated = eat.gate_offsets(offset, reference)
    # row 0: 0.2*0.5 > 0 and -0.1*-0.5 > 0 -> kept
    # row 1: 0.3*0.5 > 0 but 0.4*-0.5 < 0 -> x 0.25
    # row 2: -0.5*-0.1 > 0 but 0.1*-0.1 < 0 -> x 0.25
    # row 3: 0.0*0.3 = 0 is not > 0       -> x 0.25
    expected = torch.tensor([[0.2, -0.1], [0.075, 0.1], [-0.125, 0.025], [0.0, 0.05]])
    torch.testing.assert_close(gated, expected)
    gated.sum().backward()  # gradient through offset * gate, the gate itself is a constant
    torch.testing.assert_close(
        offset.grad, torch.tensor([[1.0] * 2, [0.25] * 2, [0.25] * 2, [0.25] * 2])
    )


def test_deformable_block_samples_at_the_interest_point():
    """No offsets and a constant interest point on pixel (row 1, col 2) of a 4x4 map: every key
    and value is x[1, 2], so every output is proj_out(proj_v(x[1, 2]))."""
    torch.manual_seed(0)
    block = eat.DAttentionBaseline(
        dim=8, heads=2, groups=2, fmap=4, offset_kernel=3, offset_range_factor=2, use_pe=True
    )
    with torch.no_grad():
        block.conv_offset[3].weight.zero_()
        block.ref_point14.weight.zero_()
        # align_corners=True: pixel j of 4 sits at -1 + 2j/3, so row 1 -> -1/3, col 2 -> 1/3
        block.ref_point14.bias.copy_(torch.tensor([math.atanh(-1 / 3), math.atanh(1 / 3)]))
    x = torch.randn(3, 4, 4, 8)  # channels-last
    with torch.no_grad():
        out = block(x)
        v = x[:, 1, 2] @ block.proj_v.weight.flatten(1).T + block.proj_v.bias
        expected = v @ block.proj_out.weight.flatten(1).T + block.proj_out.bias
    torch.testing.assert_close(out, expected[:, None, None].expand_as(out), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(block.interest(x)[0, 0, 0], torch.tensor([-1 / 3, 1 / 3]))


# Outputs 1-4 of the official `DAT` (AVA/models/dat.py, run on CPU with einops) at the smoke
# config, loaded with `_golden_state()` and run in eval on `_golden_input()`: in one batch of 3
# (its batch-mean interest points) and each image alone (= per-sample interest points).
OFFICIAL_IN_BATCH = [
    [0.104083, 0.611284, 0.187120, 1.245006],
    [0.117977, 0.605308, 0.185379, 1.244526],
    [0.098779, 0.605332, 0.182902, 1.258008],
]
OFFICIAL_ALONE = [
    [0.104051, 0.611262, 0.187127, 1.245030],
    [0.118446, 0.605274, 0.185623, 1.244465],
    [0.098804, 0.605290, 0.182923, 1.258080],
]


def _golden_state_and_input():
    g = torch.Generator().manual_seed(2023)
    state = {
        k: 0.2 * torch.randn(shape, generator=g)
        for k, shape in official_shapes(_config("smoke")).items()
        if not k.endswith(eat.DERIVED_BUFFERS)
    }
    for key in state:  # larger offsets and interest points, so that both matter
        if "ref_point14" in key or "conv_offset.3" in key:
            state[key] *= 5
    return state, torch.randn(3, 3, 32, 32, generator=g)


@pytest.mark.parametrize(
    "mode, expected", [("per_sample", OFFICIAL_ALONE), ("batch_mean", OFFICIAL_IN_BATCH)]
)
def test_matches_the_official_forward(tmp_path, mode, expected):
    state, x = _golden_state_and_input()
    torch.save(state, tmp_path / "golden.pth")  # EAT's trained layout: head loaded too
    cfg = _config("smoke", interest_points=mode, head="distribution")
    model = eat.build(weights={"auto": tmp_path / "golden.pth"}, **cfg)
    with torch.no_grad():
        out = model.eval()(x)[:, :4]  # the official head: raw outputs
    torch.testing.assert_close(out, torch.tensor(expected), atol=2e-5, rtol=0)


# ---- surface and size -------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_surface(profile):
    model = create_model("eat", profile)
    size = model_config("eat", profile)["img_size"]
    z = model.forward_features(torch.randn(2, 3, size, size))
    assert z.shape == (2, model.feature_dim) and model.forward_head(z).shape == (2, 10)
    assert model.needs == () and model.output == "logits"


def test_paper_size_and_official_names():
    cfg = _config("paper")
    with torch.device("meta"):  # shapes only, no memory or init time
        model = eat.build(**cfg)
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - PAPER_PARAMS) / PAPER_PARAMS < 0.02, n_params
    assert n_params == 86_878_166  # arithmetic on the official shapes below
    official = {
        k: v for k, v in official_shapes(cfg).items() if not k.endswith(eat.DERIVED_BUFFERS)
    }
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == official
    assert model.feature_dim == 1024 and model.output == "distribution"
    tad66k, _ = resolve_config("eat", "paper", "tad66k")
    assert tad66k["head"] == "score"
    with torch.device("meta"):
        scalar = eat.build(**{k: v for k, v in tad66k.items() if k not in HARNESS_KEYS})
    assert scalar.cls_head.weight.shape == (1, 1024) and scalar.output == "score"


def test_the_three_heads_share_their_init_and_read_the_raw_outputs():
    models = {}
    base = {k: v for k, v in _config("smoke").items() if k != "head"}
    for head in ("logits", "distribution", "score", None):  # None: a config without the key
        torch.manual_seed(0)
        models[head] = eat.build(**base, **({} if head is None else {"head": head}))
    assert [m.output for m in models.values()] == ["logits", "distribution", "score", "logits"]
    reference = models["logits"].state_dict()
    for head, model in models.items():
        for key, value in model.state_dict().items():
            if head != "score" or not key.startswith("cls_head."):
                assert torch.equal(value, reference[key]), (head, key)
    z = torch.randn(2, 64)
    for model in models.values():  # forward_head is cls_head, no softmax, whatever the head
        torch.testing.assert_close(model.forward_head(z), model.cls_head(z))
    assert models["score"].forward_head(z).shape == (2, 1)
    with pytest.raises(ValueError, match="EAT head must be one of"):
        eat.build(**_config("smoke", head="raw"))


def test_paper_forward():
    """About 1.3 s for the forward (one thread, a free core)."""
    torch.manual_seed(0)
    model = eat.build(**_config("paper")).eval()
    with torch.no_grad():
        z = model.forward_features(torch.randn(2, 3, 224, 224))
        logits = model.forward_head(z)
    assert z.shape == (2, 1024) and logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_forward_has_no_host_sync():
    """Runs on the meta device, where any value-dependent host step (.item(), numpy, boolean
    indexing) raises: the gate and the sampling are vectorised tensor code."""
    with torch.device("meta"):
        model = eat.build(**_config("smoke"))
        out = model(torch.empty(4, 3, 32, 32))
    assert out.shape == (4, 10) and out.device.type == "meta"


# ---- batch independence -----------------------------------------------------------------------


def _alone_vs_in_batch(model, size):
    torch.manual_seed(3)
    x = torch.randn(16, 3, size, size)
    with torch.no_grad():
        batch = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in (0, 7, 15)])
    return (alone - batch[[0, 7, 15]]).abs().max().item()


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_eval_output_does_not_depend_on_the_batch(profile):
    torch.manual_seed(1)
    model = eat.build(**_config(profile)).eval()
    assert _alone_vs_in_batch(model, model.img_size) < 1e-5


def test_official_batch_mean_interest_points_couple_the_batch():
    torch.manual_seed(1)
    model = eat.build(**_config("smoke", interest_points="batch_mean")).eval()
    with torch.no_grad():  # make the interest points matter
        for name, p in model.named_parameters():
            if "ref_point14" in name:
                p.mul_(20)
    assert _alone_vs_in_batch(model, 32) > 1e-3


# ---- weights in the official layouts ----------------------------------------------------------


def _fresh():
    torch.manual_seed(5)
    return eat.build(**_config("smoke"))


def _assert_loaded(model, state, skip=()):
    own = model.state_dict()
    n = 0
    for key, value in state.items():
        if key.endswith(eat.DERIVED_BUFFERS) or any(s in key for s in skip):
            continue
        assert torch.equal(own[key.removeprefix("module.")], value), key
        n += 1
    assert n > 100


def test_dat_imagenet_checkpoint(tmp_path):
    cfg = _config("smoke")
    state = _random_state(official_shapes(cfg, n_out=1000, interest=False), seed=1)
    path = tmp_path / "dat_base_in1k_224.pth"
    torch.save({"model": state, "epoch": 299, "max_accuracy": 84.0}, path)
    fresh = _fresh()
    for part in ("auto", "backbone"):
        model = _fresh()
        assert eat.load_weights(model, part, path) == (
            "DAT ImageNet" if part == "auto" else "DAT ImageNet backbone"
        )
        _assert_loaded(model, state, skip=("cls_head",))
        for key in ("cls_head.weight", "stages.2.attns.1.ref_point14.weight"):  # left at init
            assert torch.equal(model.state_dict()[key], fresh.state_dict()[key]), key
    assert not torch.equal(fresh.state_dict()["patch_proj.0.weight"], state["patch_proj.0.weight"])


def test_eat_released_ava_state_dict(tmp_path):
    state = _random_state(official_shapes(_config("smoke")), seed=2)
    path = tmp_path / "AVA_AOT_vacc_0.8259_srcc_0.7596_vlcc_0.7710.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # prefix is stripped
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the official head: loaded as it is, no warning
        model = eat.build(weights={"auto": path}, **_config("smoke", head="distribution"))
    _assert_loaded(model, state)
    # Its raw outputs are the distribution, scored as the official get_score: sum_k k out_k,
    # not renormalised (sum 0.9) and not clipped (bin 10 at -0.1): 5 0.5 + 6 0.5 - 10 0.1.
    raw = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, -0.1])
    with torch.no_grad():
        model.cls_head.weight.zero_()
        model.cls_head.bias.copy_(raw)
        out = model.forward_head(torch.zeros(1, 64))
    torch.testing.assert_close(out, raw[None])
    torch.testing.assert_close(scores(out, model.output), torch.tensor([4.5]))
    with pytest.warns(UserWarning, match="AVA_AOT.*head 'logits'.*emits the distribution"):
        eat.build(weights={"auto": path}, **_config("smoke"))  # loads; its outputs: no logits


def test_eat_tad66k_state_dict(tmp_path):
    state = _random_state(official_shapes(_config("smoke"), n_out=1), seed=3)
    path = tmp_path / "TAD66K_AOT_vacc_0.6882_srcc_0.5171_vlcc_0.5460.pth"
    torch.save(state, path)
    model = eat.build(weights={"auto": path}, **_config("smoke", head="score"))
    _assert_loaded(model, state)  # whole, its 1-output head included
    with torch.no_grad():  # one raw output, the score / 10: 0.55 -> 5.5
        model.cls_head.weight.zero_()
        model.cls_head.bias.fill_(0.55)
        out = model.forward_head(torch.zeros(2, 64))
    torch.testing.assert_close(scores(out, model.output), torch.tensor([5.5, 5.5]))
    for head in ("logits", "distribution"):
        with pytest.raises(
            UserError, match=rf"TAD66K_AOT.*cls_head has 1 outputs, head '{head}' has 10"
        ):
            eat.build(weights={"auto": path}, **_config("smoke", head=head))
    model = eat.build(weights={"backbone": path}, **_config("smoke"))
    _assert_loaded(model, state, skip=("cls_head",))  # ref_point14 included
    with pytest.raises(UserError, match=r"AVA\.pth: its cls_head has 10 outputs, head 'score'"):
        torch.save(_random_state(official_shapes(_config("smoke")), seed=4), tmp_path / "AVA.pth")
        eat.build(weights={"auto": tmp_path / "AVA.pth"}, **_config("smoke", head="score"))


def test_bare_path_is_auto(tmp_path):
    state = _random_state(official_shapes(_config("smoke")), seed=4)
    torch.save(state, tmp_path / "w.pth")
    with pytest.warns(UserWarning, match="head 'logits'"):  # the smoke config's head
        model = create_model("eat", "smoke", weights=tmp_path / "w.pth")
    _assert_loaded(model, state)


def test_wrong_files_are_user_errors(tmp_path):
    cfg = _config("smoke")
    bad = tmp_path / "not_dat.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(UserError, match="not_dat.pth.*not a DAT/EAT state dict"):
        eat.build(weights={"auto": bad}, **cfg)

    cpu_sized = tmp_path / "cpu_sized.pth"
    torch.save(_random_state(official_shapes(_config("cpu")), seed=5), cpu_sized)
    with pytest.raises(
        UserError, match="cpu_sized.pth: not .*first: patch_proj.0.weight has shape"
    ):
        eat.build(weights={"auto": cpu_sized}, **cfg)  # same names, other widths

    state = _random_state(official_shapes(cfg), seed=6)
    state["stages.2.attns.3.proj_q.weight"] = torch.zeros(32, 32, 1, 1)  # a deeper stage 3
    extra = tmp_path / "extra.pth"
    torch.save(state, extra)
    with pytest.raises(
        UserError, match=r"extra.pth: not .*1 problem; first: unexpected .*attns\.3"
    ):
        eat.build(weights={"auto": extra}, **cfg)

    del state["stages.2.attns.3.proj_q.weight"]
    state["cls_norm.norm.weight"] = torch.zeros(65)
    wrong_shape = tmp_path / "wrong_shape.pth"
    torch.save(state, wrong_shape)
    with pytest.raises(UserError, match=r"wrong_shape.pth: not .*cls_norm.norm.weight has shape"):
        eat.build(weights={"auto": wrong_shape}, **cfg)

    del state["cls_norm.norm.weight"]
    missing = tmp_path / "missing.pth"
    torch.save(state, missing)
    with pytest.raises(
        UserError, match=r"missing.pth: not .*1 problem; first: missing key cls_norm"
    ):
        eat.build(weights={"auto": missing}, **cfg)

    pickled = tmp_path / "pickled.pth"
    torch.save({"model": {}, "config": _Config()}, pickled)
    with pytest.raises(UserError, match="pickled.pth: cannot read .*refused .*test_eat._Config"):
        eat.build(weights={"auto": pickled}, **cfg)

    with pytest.raises(UserError, match="bad.pth.*unknown weights part 'theme'"):
        create_model("eat", "smoke", weights={"theme": tmp_path / "bad.pth"})
    with pytest.raises(UserError, match="nothing.pth"):
        eat.build(weights={"auto": tmp_path / "nothing.pth"}, **cfg)


class _Config:
    """Stands for the yacs config that DAT's training checkpoints pickle."""


def test_paper_recipe_is_the_official_one():
    recipe = model_config("eat", "paper")["recipe"]
    assert (recipe["optimizer"], recipe["lr"], recipe["batch_size"], recipe["epochs"]) == (
        "adam", 1e-6, 16, 20,
    )  # fmt: skip
    assert (recipe["lr_step"], recipe["lr_gamma"], recipe["emd"]) == (5, 0.1, "batch_rms")
    assert (recipe["drop_last"], recipe["eval_batch_size"]) == (False, 16)
    tad66k = resolve_config("eat", "paper", "tad66k")[0]["recipe"]
    assert (tad66k["lr"], tad66k["epochs"], tad66k["lr_step"], tad66k["resize"]) == (
        1e-5, 25, 0, 256,
    )  # fmt: skip
    assert set(model_config("eat", "cpu")["recipe"]) == {"lr"}  # chosen on validation
