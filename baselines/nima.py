"""NIMA: Neural IMage Assessment (Talebi & Milanfar, TIP 2018), a baseline of Tables 1 and 3.

NIMA takes an ImageNet classifier and replaces its last fully connected layer with
Dropout(0.75) + FC(10) + softmax over the rating bins 1..10, trained with the EMD loss (r = 2).
Here the softmax belongs to the loss: `forward_head` returns the 10 logits, as every model of the
registry does.

Backbone at every profile: BN-Inception ("Inception-v2", Ioffe & Szegedy 2015).
    The paper's AVA numbers (LCC .636 / SRCC .612, the row the ELTA paper's NIMA column is
    compared with) are NIMA(Inception-v2). Neither timm nor torchvision has BN-Inception, so it is
    written here once, as data: `BN_INCEPTION_BLOCKS` is the inception table of Ioffe & Szegedy's
    Figure 5 (one row per block: 1x1, 3x3-reduce, 3x3, double-3x3-reduce, double-3x3, pool kind,
    pool projection, stride) and `BNInception` builds every block from its row. Blocks with
    stride 2 (3c, 4e) are the reduction blocks: no 1x1 branch, a stride-2 3x3 and double-3x3, and
    a pass-through 3x3/2 max pool. Parameter and buffer names are those of the public PyTorch
    port, Cadene/pretrained-models.pytorch `pretrainedmodels/models/bninception.py`
    (`conv1_7x7_s2`, `conv1_7x7_s2_bn`, `inception_3a_1x1`, ..., `inception_5b_pool_proj_bn`), so
    its ImageNet checkpoint `bn_inception-52deb4733.pth` loads key for key (its 1000-way
    `last_linear` is dropped; the older `bn_inception-239d2248.pth`, whose BN tensors are stored
    as (1, C), loads too). As in that port: every conv has a bias, BatchNorm has PyTorch's
    defaults (eps 1e-5, momentum 0.1), the stem and reduction max pools use ceil_mode, the
    in-block average pools count the padding, and the 5b pool branch is a max pool.
    At `cpu` and `smoke` the same module types and wiring are built narrower (`width` scales
    every channel count) and shallower (`blocks` keeps a subset of the table's rows, both
    reductions included); `stem_pools = 1` keeps only the stem's first max pool so that 48-px
    maps stay even before each reduction (12 and 6; BN-Inception needs even maps there: its
    3x3/2 ceil-mode pool and 3x3/2 padded convs disagree on odd sizes; `build` checks
    `img_size`). The backbone runs in the default (contiguous) layout: channels-last hits a oneDNN
    bug (bench/data/loading.py).

Size at `paper`: 10,280,490 parameters, i.e. BN-Inception as counted by osmr/imgclsmob's README
(11,295,240 with the 1000-way classifier, from Cadene's port) with Linear(1024, 1000) replaced by
Linear(1024, 10). BASELINES.md's "paper Inc-v2 ~24M" is not BN-Inception's size with any head
(1000-way: 11.3M); 24M matches Inception-v3 (23.8M). It appears as a "Parameters" column that a
third-party README (andreygetmanov/ML-Aesthetics-NIMA) adds to NIMA's AVA table next to 1000-way
Keras sizes (MobileNet 4M, VGG16 138M); other READMEs quoting that table have no such column.
The 10-way counts BASELINES.md gives for NIMA's other backbones (VGG16 134.3M, MobileNet 3.2M)
are on the same footing as ours. In TF-slim's parameterisation of the same network (no conv
biases, BN without scale, separable 7x7 stem) the count is about 10.25M (0.3 % fewer).

Input convention. Every model of the harness receives RGB in [0, 1] normalised with the ImageNet
mean and std. The Cadene BN-Inception weights expect what the original Caffe model did: BGR,
0-255, minus the BGR mean (104, 117, 128), std 1. When that file is loaded, a fixed per-pixel
affine map (`input_matrix`, `input_bias`: buffers, saved with the model) converts our input
exactly into that convention in front of the first conv, rather than folding it into conv1's
weights (which would be exact only away from the zero-padded border). Otherwise the map is the
identity (random init learns from our normalisation), except for pyiqa's inception_resnet_v2,
whose timm backbone expects (x - 0.5) / 0.5.

Pooled feature (`forward_features`, where TFA, FLSA, FDS and RankSim attach): the backbone's
global average pool of its last feature map, 1024-d for BN-Inception, taken before the dropout.
It is the penultimate representation of the published model: the only layer after it is NIMA's
own FC(10), so mixing or aligning it acts on exactly the input of the rating head (as ELTA does
with Swin V2's pooled 1024-d token average), and the dropout stays a training-time regulariser
of the head rather than noise in the feature that TFA mixes and FLSA compares.

Released trained checkpoints (`--weights nima=FILE`, part "auto"), recognised by their keys. No
official code or weights exist; three public ports published AVA weights, each with its own
backbone and head placement. `build` reads the file first, picks the matching `backbone`, builds
it (random init, then the file's values) and loads every key, with the head mapped to ours:
  layout (detected by keys)                 backbone value               head placement
  pyiqa `NIMA_VGG16_ava-dc4e8265.pth`       "pyiqa_vgg16"                timm vgg16 features_only,
    `{'params': sd}`, `base_model.features_<i>`, `classifier.2`           GAP (512) -> FC
  pyiqa `NIMA_InceptionV2_ava-b0c77c00.pth` "pyiqa_inception_resnet_v2"  timm inception_resnet_v2
    (despite its name an Inception-ResNet-v2), `base_model.conv2d_1a...`  features_only, GAP (1536)
                                                                          -> FC
  yunxiaoshi `epoch-34.pth`, plain sd,      "yunxiaoshi_vgg16"           torchvision VGG16 conv
    `features.<i>`, `classifier.1`                                        map flattened (25088 at
                                                                          224 px) -> FC
  truskovskiyk `pretrain-model.pth` (v1),   "truskovskiyk_mobilenet_v2"  the port's own
    plain sd, `base_model.0.*`, `head.2`                                  MobileNetV2 (1280), GAP
                                                                          -> FC
  Cadene BN-Inception ImageNet file         "bn_inception"               backbone only; GAP (1024)
  this module's own state_dict              from its keys                as saved
The ports' heads: pyiqa Flatten-Dropout(0)-Linear-Softmax; yunxiaoshi Dropout(.75)-Linear-Softmax
on the flattened map; truskovskiyk ReLU-Dropout(.75)-Linear-Softmax after the port's average
pool (the ReLU is the identity there: it follows a mean of ReLU outputs, so it is left out).
Ours is Dropout(`dropout`)-Linear for every backbone (the softmax is in the loss), so loading a
port's file reproduces its softmax output in eval mode. For "yunxiaoshi_vgg16" the feature is the
flattened conv map (the input of its head), so `img_size` must be 224 for its FC to fit.
A port's file replaces the config's `backbone` (`width`, `blocks`, `stem_pools` apply to
BN-Inception only); the config's `dropout` (0.75) is kept, which matters for fine-tuning only
(pyiqa trained with 0). pyiqa's own eval also resizes to the backbone's default size (224 VGG,
299 Inception-ResNet-v2) inside its model; here `img_size` and the data pipeline decide.
`--weights nima.backbone=FILE` loads a Cadene BN-Inception ImageNet file into the backbone only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from baselines.weights import load_checked, read_state_dict
from iaa_common import IMAGENET_MEAN, IMAGENET_STD, NUM_BINS, UserError

CAFFE_BGR_MEAN = (104.0, 117.0, 128.0)  # the Cadene port's `mean`, in BGR order, on 0-255


class Block(NamedTuple):
    """One row of Ioffe & Szegedy's Figure 5 (channel counts; 0 = the branch does not exist)."""

    name: str
    c1x1: int
    c3x3_reduce: int
    c3x3: int
    cd_reduce: int  # double 3x3 reduce
    cd: int  # double 3x3 (both convs)
    pool: str  # "avg" | "max"
    pool_proj: int  # 0 = pass-through (reduction blocks)
    stride: int


BN_INCEPTION_STEM = (64, 64, 192)  # conv1 7x7/2, conv2 1x1 reduce, conv2 3x3
BN_INCEPTION_BLOCKS = (
    Block("3a", 64, 64, 64, 64, 96, "avg", 32, 1),
    Block("3b", 64, 64, 96, 64, 96, "avg", 64, 1),
    Block("3c", 0, 128, 160, 64, 96, "max", 0, 2),
    Block("4a", 224, 64, 96, 96, 128, "avg", 128, 1),
    Block("4b", 192, 96, 128, 96, 128, "avg", 128, 1),
    Block("4c", 160, 128, 160, 128, 160, "avg", 128, 1),
    Block("4d", 96, 128, 192, 160, 192, "avg", 128, 1),
    Block("4e", 0, 128, 192, 192, 256, "max", 0, 2),
    Block("5a", 352, 192, 320, 160, 224, "avg", 128, 1),
    Block("5b", 352, 192, 320, 192, 224, "max", 128, 1),
)


class BNInception(nn.Module):
    """BN-Inception's convolutional trunk; `forward` returns the last feature map.

    Every conv is followed by its BatchNorm (`<name>_bn`) and a ReLU; modules carry the Cadene
    port's names, registered from `BN_INCEPTION_BLOCKS` (see the module docstring).
    """

    def __init__(self, width: float = 1.0, blocks: list[str] | None = None, stem_pools: int = 2):
        super().__init__()
        names = [b.name for b in BN_INCEPTION_BLOCKS]
        blocks = names if blocks is None else list(blocks)
        unknown = sorted(set(blocks) - set(names))
        if unknown:
            raise UserError(f"nima: unknown BN-Inception blocks {unknown}; valid: {names}")
        self.specs = [b for b in BN_INCEPTION_BLOCKS if b.name in blocks]
        if stem_pools not in (1, 2):
            raise UserError(f"nima: stem_pools must be 1 or 2, got {stem_pools}")
        self.stem_pools = stem_pools

        def ch(n: int) -> int:
            return max(4, round(n * width)) if n else 0

        def unit(name: str, cin: int, cout: int, k: int, stride: int = 1) -> int:
            self.add_module(name, nn.Conv2d(cin, cout, k, stride, k // 2))
            self.add_module(f"{name}_bn", nn.BatchNorm2d(cout))
            return cout

        c1, c2r, c2 = (ch(n) for n in BN_INCEPTION_STEM)
        cin = unit("conv1_7x7_s2", 3, c1, 7, 2)
        cin = unit("conv2_3x3_reduce", cin, c2r, 1)
        cin = unit("conv2_3x3", cin, c2, 3)
        for b in self.specs:
            p = f"inception_{b.name}"
            out = cin if b.stride == 2 else 0  # the pass-through pool keeps the input channels
            if b.c1x1:
                out += unit(f"{p}_1x1", cin, ch(b.c1x1), 1)
            unit(f"{p}_3x3_reduce", cin, ch(b.c3x3_reduce), 1)
            out += unit(f"{p}_3x3", ch(b.c3x3_reduce), ch(b.c3x3), 3, b.stride)
            unit(f"{p}_double_3x3_reduce", cin, ch(b.cd_reduce), 1)
            unit(f"{p}_double_3x3_1", ch(b.cd_reduce), ch(b.cd), 3)
            out += unit(f"{p}_double_3x3_2", ch(b.cd), ch(b.cd), 3, b.stride)
            if b.pool_proj:
                out += unit(f"{p}_pool_proj", cin, ch(b.pool_proj), 1)
            cin = out
        self.num_features = cin

    def _cbr(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self._modules[f"{name}_bn"](self._modules[name](x)))

    def map_sizes(self, img_size: int) -> list[tuple[str, int]]:
        """(stage, side) of the feature map entering each reduction and at the end."""
        s = (img_size - 1) // 2 + 1  # conv1 7x7/2, pad 3
        pool = lambda n: -(-(n - 3) // 2) + 1  # noqa: E731  3x3/2 max pool, ceil_mode
        s = pool(s)  # pool1
        s = pool(s) if self.stem_pools == 2 else s  # pool2
        sizes = []
        for b in self.specs:
            if b.stride == 2:
                sizes.append((b.name, s))
                s = pool(s)
        return sizes + [("out", s)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self._cbr("conv1_7x7_s2", x), 3, 2, ceil_mode=True)
        x = self._cbr("conv2_3x3", self._cbr("conv2_3x3_reduce", x))
        if self.stem_pools == 2:
            x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        for b in self.specs:
            p = f"inception_{b.name}"
            out = [self._cbr(f"{p}_1x1", x)] if b.c1x1 else []
            out.append(self._cbr(f"{p}_3x3", self._cbr(f"{p}_3x3_reduce", x)))
            d = self._cbr(f"{p}_double_3x3_1", self._cbr(f"{p}_double_3x3_reduce", x))
            out.append(self._cbr(f"{p}_double_3x3_2", d))
            if b.stride == 2:
                out.append(F.max_pool2d(x, 3, 2, ceil_mode=True))
            else:
                pooled = (
                    F.avg_pool2d(x, 3, 1, 1, count_include_pad=True)
                    if b.pool == "avg"
                    else F.max_pool2d(x, 3, 1, 1)
                )
                out.append(self._cbr(f"{p}_pool_proj", pooled))
            x = torch.cat(out, 1)
        return x


# ---- the ports' backbones ----------------------------------------------------------------------

# MobileNetV2 as in truskovskiyk/nima.pytorch@v1 `nima/mobile_net_v2.py` (t, c, n, s), which
# differs from torchvision's: the t=1 block keeps its 1x1 expansion conv, and the stem and last
# 1x1 conv use ReLU (ReLU6 inside the blocks).
MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hidden = cin * t
        self.residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def _truskovskiyk_mobilenet_v2() -> nn.Module:
    """The port's `base_model`: Sequential(features), so its keys are `0.<i>...`."""
    layers: list[nn.Module] = [
        nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
    ]
    cin = 32
    for t, c, n, s in MOBILENET_V2_SETTING:
        for i in range(n):
            layers.append(_InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    layers.append(
        nn.Sequential(nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU())
    )
    return nn.Sequential(nn.Sequential(*layers))


def _materialise(make: Callable[[], nn.Module]) -> nn.Module:
    """Build on the meta device, then allocate and initialise with each layer's default init.

    timm and torchvision build a whole classifier before `features_only` / `.features` drop its
    head (VGG16's 120M FC parameters would cost seconds to initialise); this allocates only the
    kept layers. The values are overwritten when a checkpoint is loaded.
    """
    with torch.device("meta"):
        module = make()
    module = module.to_empty(device="cpu")
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return module


def _timm_features(name: str) -> nn.Module:
    import timm

    return _materialise(lambda: timm.create_model(name, pretrained=False, features_only=True))


def _torchvision_vgg16_features() -> nn.Module:
    import torchvision

    return _materialise(lambda: torchvision.models.vgg16(weights=None).features)


BACKBONES = (
    "bn_inception",
    "pyiqa_vgg16",
    "pyiqa_inception_resnet_v2",
    "yunxiaoshi_vgg16",
    "truskovskiyk_mobilenet_v2",
)


class NIMA(nn.Module):
    """Backbone -> pooled feature -> Dropout -> FC(10) logits (module docstring for the details)."""

    needs: tuple[str, ...] = ()

    def __init__(
        self,
        backbone: str = "bn_inception",
        img_size: int = 224,
        dropout: float = 0.75,
        width: float = 1.0,
        blocks: list[str] | None = None,
        stem_pools: int = 2,
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise UserError(f"nima: unknown backbone '{backbone}'; valid: {', '.join(BACKBONES)}")
        self.backbone_name = backbone
        self.flatten = backbone == "yunxiaoshi_vgg16"
        # Fixed map from our ImageNet-normalised RGB to the backbone's input convention.
        self.register_buffer("input_matrix", torch.eye(3))
        self.register_buffer("input_bias", torch.zeros(3))
        if backbone == "bn_inception":
            self.backbone = BNInception(width, blocks, stem_pools)
            odd = [(n, s) for n, s in self.backbone.map_sizes(img_size)[:-1] if s % 2]
            if odd:
                raise UserError(
                    f"nima: img_size {img_size} gives odd feature maps before the reduction "
                    f"blocks {odd}; BN-Inception needs even ones (e.g. 224, or 48 with "
                    f"stem_pools = 1)"
                )
            dim = self.backbone.num_features
        elif backbone == "pyiqa_vgg16":
            self.backbone, dim = _timm_features("vgg16"), 512
        elif backbone == "pyiqa_inception_resnet_v2":
            self.backbone, dim = _timm_features("inception_resnet_v2"), 1536
        elif backbone == "yunxiaoshi_vgg16":
            self.backbone, dim = _torchvision_vgg16_features(), 512 * (img_size // 32) ** 2
        else:
            self.backbone, dim = _truskovskiyk_mobilenet_v2(), 1280
        self.feature_dim = dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, NUM_BINS))

    def set_input_convention(self, convention: str) -> None:
        """Set the input map: "imagenet" (identity), "caffe_bgr" (Cadene's BN-Inception: BGR,
        0-255, minus (104, 117, 128)) or "inception" ((x - 0.5) / 0.5, timm's TF ports)."""
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        if convention == "imagenet":
            matrix, bias = torch.eye(3), torch.zeros(3)
        elif convention == "caffe_bgr":  # out[o] = 255 * rgb01[2 - o] - CAFFE_BGR_MEAN[o]
            flip = torch.eye(3).flip(0)
            matrix = 255.0 * flip * std.flip(0)[:, None]
            bias = 255.0 * mean.flip(0) - torch.tensor(CAFFE_BGR_MEAN)
        elif convention == "inception":  # out = 2 * rgb01 - 1
            matrix, bias = torch.diag(2.0 * std), 2.0 * mean - 1.0
        else:
            raise ValueError(convention)
        self.input_matrix.copy_(matrix)
        self.input_bias.copy_(bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, feature_dim) pooled feature: global average pool of the backbone's last map
        (BN-Inception: 1024-d), before the head's dropout; the flattened map for the
        yunxiaoshi layout. ELTA's TFA / FLSA (and FDS, RankSim) act here: it is the input of
        NIMA's only task layer, the FC(10) (module docstring)."""
        x = torch.einsum("oc,bchw->bohw", self.input_matrix.to(x.dtype), x)
        x = x + self.input_bias.to(x.dtype)[:, None, None]
        fmap = self.backbone(x)  # not channels-last: oneDNN bug (bench/data/loading.py)
        if isinstance(fmap, list | tuple):  # timm features_only: the last stage
            fmap = fmap[-1]
        return fmap.flatten(1) if self.flatten else fmap.mean(dim=(2, 3))

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---- checkpoints ---------------------------------------------------------------------------------


class Layout(NamedTuple):
    """A checkpoint layout: the keys that identify it, the backbone and input convention it needs,
    and its key prefixes mapped to ours (first match wins)."""

    name: str
    probes: tuple[str, ...]
    backbone: str
    convention: str  # "imagenet" | "caffe_bgr" | "inception" | "from file"
    renames: tuple[tuple[str, str], ...]
    full: bool  # a trained NIMA (head included) or a backbone only


_PYIQA = (("base_model.", "backbone."), ("classifier.2.", "head.1."))
LAYOUTS = (
    Layout("cadene_bn_inception_imagenet", ("conv1_7x7_s2.weight", "inception_3a_1x1.weight"),
           "bn_inception", "caffe_bgr", (("", "backbone."),), False),
    Layout("pyiqa_nima_vgg16", ("base_model.features_0.weight", "classifier.2.weight"),
           "pyiqa_vgg16", "imagenet", _PYIQA, True),
    Layout("pyiqa_nima_inception_resnet_v2", ("base_model.conv2d_1a.conv.weight",
           "classifier.2.weight"), "pyiqa_inception_resnet_v2", "inception", _PYIQA, True),
    Layout("yunxiaoshi_nima_vgg16", ("features.0.weight", "classifier.1.weight"),
           "yunxiaoshi_vgg16", "imagenet",
           (("features.", "backbone."), ("classifier.1.", "head.1.")), True),
    Layout("truskovskiyk_nima_mobilenet_v2", ("base_model.0.0.0.weight", "head.2.weight"),
           "truskovskiyk_mobilenet_v2", "imagenet",
           (("base_model.", "backbone."), ("head.2.", "head.1.")), True),
)  # fmt: skip
# This module's own state_dict: the backbone is told by its first layer's name.
_OWN_PROBES = (
    ("backbone.conv1_7x7_s2.weight", "bn_inception"),
    ("backbone.features_0.weight", "pyiqa_vgg16"),
    ("backbone.conv2d_1a.conv.weight", "pyiqa_inception_resnet_v2"),
    ("backbone.0.0.0.weight", "truskovskiyk_mobilenet_v2"),
    ("backbone.0.weight", "yunxiaoshi_vgg16"),
)


def _layout_of(keys: set[str]) -> Layout | None:
    """Recognise a checkpoint by its key names (after unwrapping and `module.` stripping)."""
    if {"head.1.weight", "input_matrix"} <= keys:
        for probe, backbone in _OWN_PROBES:
            if probe in keys:
                return Layout("nima", (probe,), backbone, "from file", (), True)
        return None
    return next((lay for lay in LAYOUTS if set(lay.probes) <= keys), None)


def to_model_keys(state: Mapping[str, torch.Tensor], layout: Layout) -> dict[str, torch.Tensor]:
    """Rename a recognised checkpoint's keys to this module's (`backbone.*`, `head.1.*`); the
    Cadene file's 1000-way ImageNet classifier `last_linear` is dropped, and its older file's
    BatchNorm tensors, stored as (1, C), become (C,)."""
    cadene = layout.name == "cadene_bn_inception_imagenet"
    out = {}
    for key, value in state.items():
        if cadene and key.startswith("last_linear."):
            continue
        if cadene and "_bn." in key and value.dim() == 2 and value.shape[0] == 1:
            value = value[0]  # bn_inception-239d2248.pth
        old, new = next(((o, n) for o, n in layout.renames if key.startswith(o)), ("", ""))
        out[new + key[len(old) :]] = value
    return out


WEIGHT_PARTS = ("auto", "backbone")


def build(weights: dict[str, Path] | None = None, **config) -> NIMA:
    """The registry's entry point (configs in models.toml).

    weights: {"auto": FILE} (a released NIMA checkpoint in a port's layout, this module's own
    state_dict, or the BN-Inception ImageNet file) or {"backbone": FILE} (BN-Inception ImageNet
    only)."""
    weights = weights or {}
    if len(weights) > 1:
        raise UserError("nima: give either nima=FILE or nima.backbone=FILE, not both")
    if not weights:
        return NIMA(**config)

    (part, path), = weights.items()  # fmt: skip
    state = read_state_dict(path)
    layout = _layout_of(set(state))
    if layout is None:
        sample = ", ".join(sorted(state)[:3])
        raise UserError(
            f"{path}: not a NIMA checkpoint layout this harness knows (keys {sample}, ...); "
            "expected pyiqa, yunxiaoshi or truskovskiyk NIMA weights, a nima state_dict, "
            "or Cadene's BN-Inception ImageNet file"
        )
    if part == "backbone" and layout.name != "cadene_bn_inception_imagenet":
        raise UserError(
            f"{path}: nima.backbone expects Cadene's BN-Inception ImageNet file, got {layout.name}"
        )
    model = NIMA(**{**config, "backbone": layout.backbone})  # the file's layout picks it
    state = to_model_keys(state, layout)
    head, own_head = state.get("head.1.weight"), model.head[1].weight
    if layout.backbone == "yunxiaoshi_vgg16" and head.shape != own_head.shape:
        raise UserError(
            f"{path}: head.1.weight has shape {tuple(head.shape)}, expected "
            f"{tuple(own_head.shape)}: img_size must be 224 for this head (it reads the "
            "flattened VGG16 map)"
        )
    load_checked(
        model,
        state,
        path,
        f"a nima/{model.backbone_name} checkpoint for this config",
        lambda key: (layout.full or key.startswith("backbone.")) and not key.startswith("input_"),
    )
    if layout.convention != "from file":
        model.set_input_convention(layout.convention)
    return model
