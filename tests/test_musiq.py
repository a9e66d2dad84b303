"""MUSIQ (baselines/musiq.py): surface, hand-computed pieces of the multi-scale input, masks,
batch independence, parameter count, and weights in pyiqa's and the official JAX layouts."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines import create_model, model_config
from baselines.musiq import (
    MUSIQ,
    StdConv2d,
    _max_pool_same,
    build,
    gaussian_resize_matrix,
    hashed_index,
)
from baselines.registry import HARNESS_KEYS
from bench.data.loading import MEAN, STD
from iaa_common import UserError

PAPER_PARAMS_REFERENCE = 27.13e6  # BASELINES.md (paper: 27M)


def _config(profile):
    return {k: v for k, v in model_config("musiq", profile).items() if k not in HARNESS_KEYS}


def _normalised(pixels01: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> the ImageNet-normalised input every registry model receives."""
    return (pixels01 - MEAN) / STD


def _randomise(model: MUSIQ, seed: int = 0) -> MUSIQ:
    """Non-trivial weights everywhere (the official init zeroes the head, CLS and gn3)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.05 if p.dim() > 1 else 0.5))
    return model


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return build(**_config("paper"))


# --------------------------------------------------------------------------- surface


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_surface(profile):
    model = create_model("musiq", profile)
    s = _config(profile)["img_size"]
    x = torch.randn(3, 3, s, s)
    size = torch.tensor([[s, s], [s - 5, s], [s, s // 2]])
    z = model.forward_features(x, size=size)
    assert model.needs == ("size",)
    assert z.shape == (3, model.feature_dim)
    assert model.forward_head(z).shape == (3, 10)
    assert torch.equal(model(x, size=size), model.forward_head(z))
    # without `size` every image fills the canvas
    full = torch.tensor([[s, s]] * 3)
    torch.testing.assert_close(model.forward_features(x), model.forward_features(x, full))


def test_cpu_profile_shape_of_the_input():
    model = create_model("musiq", "cpu")
    patches, spatial, scale_ids, mask = model.multiscale_input(torch.randn(2, 3, 48, 48))
    # 16 px -> 2x2, 32 px -> 4x4, native 48 px -> 6x6 patches of 8 px: 56 tokens (+ CLS)
    assert patches.shape == (2, 56, 3, 8, 8)
    assert mask.all() and spatial.shape == (2, 56) and scale_ids.shape == (56,)
    assert model.feature_dim == 64


def test_paper_forward_batch_of_two(paper_model):
    x = torch.randn(2, 3, 72, 100)
    size = torch.tensor([[72, 100], [64, 40]])  # landscape and portrait, native resolution
    with torch.no_grad():
        z = paper_model.forward_features(x, size)
        logits = paper_model.forward_head(z)
    assert z.shape == (2, 384) and logits.shape == (2, 10)
    assert torch.isfinite(z).all()
    assert torch.equal(logits, torch.zeros(2, 10))  # official zero-initialised head


def test_paper_parameter_count(paper_model):
    n = sum(p.numel() for p in paper_model.parameters())
    assert n == 27_129_290
    assert abs(n - PAPER_PARAMS_REFERENCE) / PAPER_PARAMS_REFERENCE < 0.02


# --------------------------------------------------------------------------- hand-computed pieces


def test_hashed_spatial_index_and_scale_ids_hand_case():
    """One 48 x 32 image (h x w), P 8, G 10, scales 16 and 32, worked out by hand:
    16: ratio 1/3 -> 16 x round(10.67) = 11 -> 2 x 2 patches; rows/cols floor(i*10/2) = 0, 5
    32: 32 x round(21.33) = 21 -> 4 x 3 patches (canvas 4 x 4, last column padding);
        rows floor(i*10/4) = 0, 2, 5, 7; cols floor(i*10/3) = 0, 3, 6 (padding: clamped 9)
    native: 6 x 4 patches; rows floor(i*10/6) = 0, 1, 3, 5, 6, 8; cols 0, 2, 5, 7."""
    model = MUSIQ(img_size=48, patch_size=8, scales=(32, 16), grid_size=10, hidden_size=16,
                  mlp_dim=16, num_heads=2, num_layers=1, stem_width=8)  # fmt: skip
    _, spatial, scale_ids, mask = model.multiscale_input(torch.randn(1, 3, 48, 32))
    expected_spatial = [0, 5, 50, 55] + [
        0, 3, 6, 9,
        20, 23, 26, 29,
        50, 53, 56, 59,
        70, 73, 76, 79,
    ] + [
        0, 2, 5, 7,
        10, 12, 15, 17,
        30, 32, 35, 37,
        50, 52, 55, 57,
        60, 62, 65, 67,
        80, 82, 85, 87,
    ]  # fmt: skip
    expected_mask = [1, 1, 1, 1] + [1, 1, 1, 0] * 4 + [1] * 24
    expected_scale = [0] * 4 + [1] * 16 + [2] * 24  # sorted longer sides; native last
    assert spatial[0].tolist() == expected_spatial
    assert mask[0].long().tolist() == expected_mask
    assert scale_ids.tolist() == expected_scale


def test_hashed_index_is_tf_nearest_in_float32():
    # TF1 nearest resize: floor(i * float32(G / count)); equals floor(i * G / count) here ...
    counts = torch.tensor([1, 3, 7, 12, 16, 25])
    got = hashed_index(counts, 25, 10)
    for row, c in zip(got, counts.tolist(), strict=True):
        assert row[:c].tolist() == [i * 10 // c for i in range(c)]
    # ... but not for 205 patches, where float32 rounding moves 41 * (10 / 205) below 2
    assert hashed_index(torch.tensor([205]), 205, 10)[0, 41].item() == 1


def test_gaussian_resize_hand_cases():
    e2 = math.exp(-2.0)  # weight at distance 1: exp(-1 / (2 * 0.5^2))
    # 4 -> 2: output i samples input position 2i + 1; pixels at distance 0.5 weigh equally,
    # those at 1.5 are outside the radius
    w = gaussian_resize_matrix(torch.tensor([4]), torch.tensor([2]), torch.tensor([0]), 2, 4)
    torch.testing.assert_close(w[0], torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]))
    # 3 -> 3: TF blurs even at scale 1 (neighbours at distance 1 weigh exp(-2))
    w = gaussian_resize_matrix(torch.tensor([3]), torch.tensor([3]), torch.tensor([0]), 3, 3)
    expected = torch.tensor(
        [
            [1 / (1 + e2), e2 / (1 + e2), 0],
            [e2 / (1 + 2 * e2), 1 / (1 + 2 * e2), e2 / (1 + 2 * e2)],
            [0, e2 / (1 + e2), 1 / (1 + e2)],
        ]
    )
    torch.testing.assert_close(w[0], expected)
    # an offset shifts the rows onto a larger canvas with zero rows around; columns past the
    # image's own length (a padded batch) get no weight
    w = gaussian_resize_matrix(torch.tensor([4]), torch.tensor([2]), torch.tensor([1]), 4, 6)
    assert torch.equal(w[0, 0], torch.zeros(6)) and torch.equal(w[0, 3], torch.zeros(6))
    torch.testing.assert_close(w[0, 1], torch.tensor([0.5, 0.5, 0, 0, 0, 0]))


def test_native_patches_are_centred_like_tf_same_padding():
    """A 20 x 13 image, P 8: 3 x 2 patches; TF 'SAME' puts (24 - 20) // 2 = 2 zero rows above
    and 2 below, (16 - 13) // 2 = 1 zero column left and 2 right; values in [-1, 1]."""
    model = create_model("musiq", "smoke")
    pixels = torch.rand(1, 3, 20, 13)
    patches, _, scale_ids, mask = model.multiscale_input(_normalised(pixels))
    native = patches[0, scale_ids == 2][mask[0, scale_ids == 2]]  # (6, 3, 8, 8)
    canvas = native.view(3, 2, 3, 8, 8).permute(2, 0, 3, 1, 4).reshape(3, 24, 16)
    expected = torch.zeros(3, 24, 16)
    expected[:, 2:22, 1:14] = pixels[0] * 2 - 1
    torch.testing.assert_close(canvas, expected)


def test_std_conv_same_padding_and_biased_standardisation():
    # 1x1 kernel [3, 1]: mean 2, biased std 1 -> [1, -1] / (1 + 1e-5)
    conv = StdConv2d(2, 1, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([3.0, 1.0]).view(1, 2, 1, 1))
    y = conv(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
    torch.testing.assert_close(y.flatten(), torch.tensor([1 / (1 + 1e-5)]))
    # 7x7 stride 2 on 8 px: TF SAME pads (2, 3), not PyTorch's symmetric 3
    conv = StdConv2d(3, 4, 7, 2)
    x = torch.randn(2, 3, 8, 8)
    w = conv.weight
    w = (w - w.mean((1, 2, 3), keepdim=True)) / (
        w.std((1, 2, 3), keepdim=True, correction=0) + 1e-5
    )
    torch.testing.assert_close(conv(x), F.conv2d(F.pad(x, (2, 3, 2, 3)), w, stride=2))
    # 3x3 stride-2 max-pool on 4 px: SAME pads (0, 1): windows at rows 0-2 and 2-3
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert _max_pool_same(x).flatten().tolist() == [10.0, 11.0, 14.0, 15.0]


# --------------------------------------------------------------------------- masks, batches


def test_padding_changes_nothing():
    torch.manual_seed(0)
    model = _randomise(create_model("musiq", "cpu")).eval()
    image = torch.randn(1, 3, 37, 29)
    with torch.no_grad():
        alone = model(image, torch.tensor([[37, 29]]))
        canvas = torch.randn(3, 3, 60, 52)
        canvas[0, :, :37, :29] = image[0]
        size = torch.tensor([[37, 29], [60, 52], [20, 50]])
        batch = model(canvas, size)
        junk = canvas.clone()
        junk[0, :, 37:, :] = 100.0
        junk[0, :, :, 29:] = -50.0
        batch_junk = model(junk, size)
    assert alone.abs().max() > 0.1  # the comparisons below could fail
    torch.testing.assert_close(batch[0], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch_junk, batch, atol=1e-6, rtol=1e-6)


def test_padded_tokens_are_masked_out_of_attention():
    torch.manual_seed(1)
    model = _randomise(create_model("musiq", "smoke"), seed=1).eval()
    x = torch.randn(1, 3, 32, 20)
    patches, spatial, scale_ids, mask = model.multiscale_input(x, torch.tensor([[32, 12]]))
    assert not mask.all()  # the resized scales have padded slots
    with torch.no_grad():
        tokens = model.encode_patches(patches)
        ref = model.transformer_encoder(tokens, spatial, scale_ids, mask)[:, 0]
        noisy = torch.where(mask[..., None], tokens, torch.randn_like(tokens) * 10)
        out = model.transformer_encoder(noisy, spatial, scale_ids, mask)[:, 0]
        unmasked = model.transformer_encoder(noisy, spatial, scale_ids, torch.ones_like(mask))
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    assert (unmasked[:, 0] - ref).abs().max() > 1e-3


def test_eval_batch_independence():
    torch.manual_seed(2)
    model = _randomise(create_model("musiq", "cpu"), seed=2).eval()
    x = torch.randn(4, 3, 48, 48)
    size = torch.tensor([[48, 48], [30, 48], [48, 17], [9, 9]])
    with torch.no_grad():
        batch = model(x, size)
        single = torch.cat([model(x[i : i + 1], size[i : i + 1]) for i in range(4)])
        reordered = model(x.flip(0), size.flip(0)).flip(0)
    assert batch.std(0).mean() > 1e-3
    torch.testing.assert_close(single, batch, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reordered, batch, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- weight files


def _official_shapes(cfg: dict) -> dict[str, tuple]:
    """The official JAX parameter tree (below `opt/target/`) for a config, by hand."""
    d, m, h, w = cfg["hidden_size"], cfg["mlp_dim"], cfg["num_heads"], cfg["stem_width"]
    g, s, side = cfg["grid_size"], len(cfg["scales"]) + 1, cfg["patch_size"] // 4
    shapes = {
        "conv_root/kernel": (7, 7, 3, w),
        "gn_root/scale": (w,),
        "gn_root/bias": (w,),
        "block1/unit1/conv1/kernel": (1, 1, w, w),
        "block1/unit1/conv2/kernel": (3, 3, w, w),
        "block1/unit1/conv3/kernel": (1, 1, w, 4 * w),
        "block1/unit1/conv_proj/kernel": (1, 1, w, 4 * w),
        "embedding/kernel": (side * side * 4 * w, d),
        "embedding/bias": (d,),
        "Transformer/posembed_input/pos_embedding": (1, g * g, d),
        "Transformer/scaleembed_input/scale_embedding": (1, s, d),
        "Transformer/cls": (1, 1, d),
        "Transformer/encoder_norm/scale": (d,),
        "Transformer/encoder_norm/bias": (d,),
    }
    for gn, c in (("gn1", w), ("gn2", w), ("gn3", 4 * w), ("gn_proj", 4 * w)):
        shapes[f"block1/unit1/{gn}/scale"] = shapes[f"block1/unit1/{gn}/bias"] = (c,)
    for i in range(cfg["num_layers"]):
        b = f"Transformer/encoderblock_{i}"
        for ln in ("LayerNorm_0", "LayerNorm_1"):
            shapes[f"{b}/{ln}/scale"] = shapes[f"{b}/{ln}/bias"] = (d,)
        for proj in ("query", "key", "value"):
            shapes[f"{b}/SelfAttention_0/{proj}/kernel"] = (d, h, d // h)
            shapes[f"{b}/SelfAttention_0/{proj}/bias"] = (h, d // h)
        shapes[f"{b}/SelfAttention_0/out/kernel"] = (h, d // h, d)
        shapes[f"{b}/SelfAttention_0/out/bias"] = (d,)
        shapes[f"{b}/MlpBlock_0/Dense_0/kernel"] = (d, m)
        shapes[f"{b}/MlpBlock_0/Dense_0/bias"] = (m,)
        shapes[f"{b}/MlpBlock_0/Dense_1/kernel"] = (m, d)
        shapes[f"{b}/MlpBlock_0/Dense_1/bias"] = (d,)
    return shapes


def _official_npz(cfg: dict, head_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = _official_shapes(cfg) | {
        "head/kernel": (cfg["hidden_size"], head_classes),
        "head/bias": (head_classes,),
    }
    flat = {
        f"opt/target/{k}": rng.standard_normal(v).astype(np.float32) * 0.1
        for k, v in shapes.items()
    }
    flat["opt/state/step"] = np.array(1000)  # optimizer state, ignored
    flat["opt/state/param_states/conv_root/kernel/momentum"] = np.zeros((7, 7, 3, 1), np.float32)
    return flat


def _pyiqa_from_official(flat: dict[str, np.ndarray], cfg: dict) -> dict[str, torch.Tensor]:
    """pyiqa's layout and names, made with the rules of its scripts/convert_musiq_to_pth.py."""
    d = cfg["hidden_size"]
    out = {}
    for key, v in flat.items():
        if not key.startswith("opt/target/"):
            continue
        k = key.removeprefix("opt/target/")
        leaf = "weight" if k.endswith(("kernel", "scale")) else "bias"
        parts = k.split("/")
        if "conv" in k:
            v = v.transpose(3, 2, 0, 1)
        elif any(p in k for p in ("key/", "value/", "query/")):
            v = v.transpose(1, 2, 0).reshape(d, d) if leaf == "weight" else v.reshape(-1)
        elif "out/" in k:
            v = v.transpose(2, 0, 1).reshape(d, d) if leaf == "weight" else v
        elif k.endswith("scale_embedding"):
            v = v.squeeze(0)
        elif v.ndim == 2:
            v = v.T
        if parts[0] in ("conv_root", "gn_root", "embedding"):
            name = f"{parts[0]}.{leaf}"
        elif parts[0] == "head":
            name = f"head.0.{leaf}"
        elif parts[0] == "block1":
            name = f"block1.{parts[2]}.{leaf}"
        elif k == "Transformer/posembed_input/pos_embedding":
            name = "transformer_encoder.posembed_input.position_emb"
        elif k == "Transformer/scaleembed_input/scale_embedding":
            name = "transformer_encoder.scaleembed_input.scale_emb"
        elif k == "Transformer/cls":
            name = "transformer_encoder.cls"
        elif parts[1] == "encoder_norm":
            name = f"transformer_encoder.encoder_norm.{leaf}"
        else:
            block = f"transformer_encoder.transformer.{parts[1]}"
            sub = {"LayerNorm_0": "norm1", "LayerNorm_1": "norm2"}.get(parts[2])
            if sub is None and parts[2] == "SelfAttention_0":
                sub = f"attention.{parts[3]}"
            if sub is None:
                sub = {"Dense_0": "mlp.fc1", "Dense_1": "mlp.fc2"}[parts[3]]
            name = f"{block}.{sub}.{leaf}"
        out[name] = torch.from_numpy(np.ascontiguousarray(v))
    return out


def test_official_npz_loads_with_the_jax_semantics(tmp_path):
    cfg = _config("smoke")
    flat = _official_npz(cfg, head_classes=10)
    path = tmp_path / "ava_ckpt.npz"
    np.savez(path, **flat)
    model = build(weights={"auto": path}, **cfg)
    t = "opt/target/"
    sd = model.state_dict()
    assert torch.equal(
        sd["conv_root.weight"], torch.from_numpy(flat[t + "conv_root/kernel"]).permute(3, 2, 0, 1)
    )
    assert torch.equal(sd["head.weight"], torch.from_numpy(flat[t + "head/kernel"]).T)
    assert torch.equal(
        sd["block1.gn3.weight"], torch.from_numpy(flat[t + "block1/unit1/gn3/scale"])
    )
    # attention: q = einsum(x, kernel (D, heads, head_dim)) + bias, out = einsum(y, (heads, hd, D))
    blk = model.transformer_encoder.transformer["encoderblock_0"].attention
    a = f"{t}Transformer/encoderblock_0/SelfAttention_0/"
    x = torch.randn(5, cfg["hidden_size"])
    q = torch.einsum("nd,dhk->nhk", x, torch.from_numpy(flat[a + "query/kernel"]))
    q = q + torch.from_numpy(flat[a + "query/bias"])
    torch.testing.assert_close(blk.query(x), q.reshape(5, -1))
    y = torch.randn(5, cfg["num_heads"], cfg["hidden_size"] // cfg["num_heads"])
    o = torch.einsum("nhk,hkd->nd", y, torch.from_numpy(flat[a + "out/kernel"]))
    torch.testing.assert_close(
        blk.out(y.reshape(5, -1)), o + torch.from_numpy(flat[a + "out/bias"])
    )
    # the official scale embedding (1, S, D) and the table of the hashed spatial embedding
    torch.testing.assert_close(
        sd["transformer_encoder.scaleembed_input.scale_emb"],
        torch.from_numpy(flat[t + "Transformer/scaleembed_input/scale_embedding"][0]),
    )
    # same values through pyiqa's converted layout: the same model
    pth = tmp_path / "musiq_ava_ckpt-e8d3f067.pth"
    torch.save(_pyiqa_from_official(flat, cfg), pth)
    twin = build(weights={"auto": pth}, **cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model.eval()(x))
    assert model(x).abs().max() > 1e-3


def test_pyiqa_ava_checkpoint_loads_as_released_and_backbone_skips_the_head(tmp_path):
    cfg = _config("smoke")
    state = _pyiqa_from_official(_official_npz(cfg, head_classes=10, seed=3), cfg)
    path = tmp_path / "musiq_ava_ckpt-e8d3f067.pth"
    torch.save({"params": state}, path)  # pyiqa's load also accepts {'params': sd}
    fresh = build(**cfg)
    model = create_model("musiq", "smoke", weights=path)  # the registry passes a bare path
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key.replace("head.0.", "head.")], value), key
    assert not torch.equal(fresh.state_dict()["embedding.weight"], state["embedding.weight"])
    backbone = build(weights={"backbone": path}, **cfg)
    assert torch.equal(backbone.head.weight, torch.zeros_like(backbone.head.weight))
    assert torch.equal(backbone.embedding.weight, state["embedding.weight"])


def test_pyiqa_imagenet_checkpoint_loads_the_encoder_only(tmp_path):
    cfg = _config("smoke")
    d = cfg["hidden_size"]
    state = _pyiqa_from_official(_official_npz(cfg, head_classes=1000, seed=4), cfg)
    state["imagenet_head.weight"] = state.pop("head.0.weight")
    state["imagenet_head.bias"] = state.pop("head.0.bias")
    state["head.weight"], state["head.bias"] = torch.randn(1, d), torch.randn(1)  # unconverted
    path = tmp_path / "musiq_imagenet_pretrain-51d9b0a5.pth"
    torch.save(state, path)
    model = build(weights={"auto": path}, **cfg)
    assert torch.equal(model.transformer_encoder.cls, state["transformer_encoder.cls"])
    assert torch.equal(model.head.weight, torch.zeros(10, d))


def test_official_imagenet_npz_skips_its_1000_way_head(tmp_path):
    cfg = _config("smoke")
    flat = _official_npz(cfg, head_classes=1000, seed=5)
    path = tmp_path / "imagenet_pretrain.npz"
    np.savez(path, **flat)
    model = build(weights={"auto": path}, **cfg)
    assert torch.equal(model.head.weight, torch.zeros_like(model.head.weight))
    kernel = flat["opt/target/Transformer/encoderblock_0/MlpBlock_0/Dense_1/kernel"]
    fc2 = model.transformer_encoder.transformer["encoderblock_0"].mlp.fc2
    assert torch.equal(fc2.weight, torch.from_numpy(kernel).T)


def test_paper_sized_official_tree_maps_onto_the_paper_model(paper_model, tmp_path):
    cfg = _config("paper")
    shapes = _official_shapes(cfg) | {"head/kernel": (384, 10), "head/bias": (10,)}
    assert len(shapes) == len(paper_model.state_dict())
    flat = {f"opt/target/{k}": np.zeros(v, np.float32) for k, v in shapes.items()}
    from baselines.musiq import _from_jax

    body, head = _from_jax(flat, tmp_path / "ava_ckpt.npz")
    own = paper_model.state_dict()
    for key, value in (body | head).items():
        assert tuple(value.shape) == tuple(own[key].shape), key
    assert set(body) | set(head) == set(own)


def test_wrong_files_are_user_errors_naming_the_file(tmp_path):
    cfg = _config("smoke")
    other = tmp_path / "resnet50.pth"
    torch.save({"conv1.weight": torch.randn(2, 2)}, other)
    with pytest.raises(UserError, match="resnet50.pth.*not a MUSIQ checkpoint"):
        build(weights={"auto": other}, **cfg)
    cpu_npz = tmp_path / "cpu_sized.npz"
    np.savez(cpu_npz, **_official_npz(_config("cpu"), head_classes=10))
    with pytest.raises(
        UserError, match="cpu_sized.npz: not a MUSIQ .*unexpected key .*encoderblock_1"
    ):
        build(weights={"auto": cpu_npz}, **cfg)  # 2 layers into a 1-layer config
    grid8 = tmp_path / "grid8.npz"
    flat = _official_npz(cfg, head_classes=10)
    flat["opt/target/Transformer/posembed_input/pos_embedding"] = np.zeros((1, 64, 32), np.float32)
    np.savez(grid8, **flat)
    with pytest.raises(UserError, match=r"grid8.npz.*position_emb.*\(1, 64, 32\).*\(1, 100, 32\)"):
        build(weights={"auto": grid8}, **cfg)
    partial = tmp_path / "partial.npz"
    flat = _official_npz(cfg, head_classes=10)
    flat.pop("opt/target/Transformer/cls")
    np.savez(partial, **flat)
    with pytest.raises(UserError, match="partial.npz.*missing.*cls"):
        build(weights={"auto": partial}, **cfg)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="garbage.pth"):
        build(weights={"auto": garbage}, **cfg)
    with pytest.raises(UserError, match="nothing.npz"):
        build(weights={"auto": tmp_path / "nothing.npz"}, **cfg)
    with pytest.raises(UserError, match="unknown weights part 'theme'"):
        create_model("musiq", "smoke", weights={"theme": cpu_npz})
