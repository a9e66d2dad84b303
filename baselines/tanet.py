"""TANet (He et al., IJCAI 2022, "Rethinking Image Aesthetics Assessment: Models, Datasets and
Benchmarks"), from the official code woshidandan/TANet-image-aesthetics-and-quality-assessment:
`code/AVA/train_nni.py` (classes `TANet`, `L1`, `TargetNet`, `TargetFC`, `L5`, `Attention`,
`MobileNetV2`), `code/AVA/option.py`, `code/AVA/util.py`; `code/TAD66K/train_nni.py` for the
TAD66K variant. Module and parameter names are the official ones (typos included:
`tygertnet`), so the released state dict loads without renaming.

Three branches, concatenated in the official order [aesthetics, theme, RGB] (30-d):
  theme (TUNet)  `res365_last`: a scene classifier (torchvision ResNet layout, BasicBlocks; at
                 paper ResNet-18 with 365 Places365 logits), frozen. Its T logits t feed
                 L1 `hypernet`: W = last_out_w(t) (H), b = last_out_b(t) (1), the per-image
                 weights of a target layer, and L2 `tygertnet`: h = Dropout(.5)(PReLU(BN(fc1(t))))
                 (H = 100 at paper). L3 multiplies the two flows (see "Batch coupling" below),
                 then normalisation and PReLU `relu7` -> 10-d.
  RGB (RGBNet)   AdaptiveAvgPool2d(12) of the normalised image -> the 144x144 cosine-similarity
                 map of the patch colour vectors (no learned Q/K/V, as in the code, despite the
                 paper's eq. 4) -> `head_rgb` = ReLU-Dropout(.75)-Linear(20736, 10) -> softmax.
  aesthetics     `mobileNet`: MobileNetV2 (the layout of the ImageNet file the official code
                 reads, see Weights) -> global average pool (1280-d) -> ReLU-Dropout(.75)-
                 Linear(1280, 10), no softmax (as in the code).
  fusion L6      `head` = ReLU-Dropout(.75)-Linear(30, 10) (config `head = "logits"`, the
                 model's `output`: bench/train/losses.py). The official AVA code ends in a
                 softmax; here `forward_head` returns the logits and the harness takes their
                 softmax once, so its scores are the official ones. `head = "score"`: the
                 official TAD66K head, ReLU-Dropout(.75)-Linear(30, 1)-Sigmoid, the score / 10
                 trained with MSE (`code/TAD66K/train_nni.py`; the paper config's
                 `datasets.tad66k`). Its theme branch differs from AVA's: a softmax over the
                 batch axis of the B x B matrix instead of the batch normalisation and PReLU.
                 That form is not reproduced: the theme branch is the AVA one (`target_net`)
                 whatever the head. Both heads are created at the same point, so a seed gives
                 the same weights up to the head.

Pooled feature. `forward_features` returns the 30-d concatenation, the tensor TANet's fusion head
reads: ELTA's TFA mixing it is exactly feature-level mixup of TANet's head input, and FLSA aligns
the representation the score is computed from. The wider alternative (the 1280-d MobileNetV2
pool) is only one of three branches: mixing it would leave the theme and RGB inputs of the head
unmixed, and the mixed rows' head input would not be a convex combination of the originals'.

Batch coupling (`target_net`). The official L3 is `F.linear(h, W_batch, b_batch)`: a B x B
matrix, entry (i, j) = h_i . W_j + b_i (image i's features against every image's generated
weights), then a `BatchNorm1d(B)` built inside `forward` (never registered: always in training
mode, never learned, fresh each call), PReLU, and `AdaptiveAvgPool2d((10, 1))` over the column
axis: B columns -> 10 (B < 10 repeats columns). So a sample's theme output depends on which
images share its batch and in which order, in eval too. `target_net = "batch"` reproduces that
computation exactly (B x B matrix, unlearned batch-statistics normalisation in train and eval,
PReLU, adaptive pooling over the batch axis): the `paper` config, with the official batches (48
in training and in evaluation, in order), so that the released checkpoint scores as the authors
ran it. A batch of one image fails there, in training and in evaluation (the official BatchNorm
raises; here a ValueError names the cause): the official loaders keep the last partial batch, so
a split whose size leaves one image in its last batch cannot run in this mode, as officially.

The paper (Section 4.1, eqs. 2-3) defines theta_theme = L1(S(x)) per image x and x_theme =
L3(L2(S(x)), theta_theme): each image's target layer is applied to that image's own features, as
in the hypernetworks TANet follows; the batch matrix looks like a bug. `target_net = "per_image"`
(the `cpu` and `smoke` configs, the `per_image` variant) computes image i's own target layer
h_i . W_i + b_i as 10 partial sums over consecutive blocks of H/10 hidden units, each carrying
b_i / 10, so that the 10 outputs add up to the paper's L3 output (the diagonal of the official
matrix) and the theme branch keeps its 10 outputs; these are normalised by a registered `bn7` =
BatchNorm1d(10, affine=False) (the official normaliser has no learned affine either: it is
rebuilt at weight 1, bias 0 each call) with running statistics, then PReLU. In eval mode a
sample's output is therefore the same whatever batch it is in (tested at B = 1, 7, 48); in
training `bn1` and `bn7` use batch statistics like any BatchNorm (as `bn1` does in the official
code), so training batches need B >= 2. `bn7` is ours: the released files have no such keys, and
loading one leaves it at its initial statistics (mean 0, variance 1).

Frozen theme network. The paper freezes S "at all times". The official code only sets
`requires_grad = False`, so `model.train()` puts the ResNet's BatchNorms in training mode and
their running statistics drift with the IAA batches (a bug: the frozen classifier changes). Here
`res365_last` has no gradient, runs under `torch.no_grad()`, and stays in eval mode whatever
`train()` is called with.

Smaller profiles. At cpu and smoke the same wiring with fewer channels, blocks and pixels: the
theme net is a ResNet-18-style BasicBlock net with a few channels and `theme_classes` logits
(10: the embedded benchmark's scene categories), which the harness pre-trains on those categories
(`theme_network`, the `pretrain` key in models.toml) and then loads as weights part `theme`; the
RGB branch keeps its 12 x 12 pooling; MobileNetV2 is narrower (`mbv2_width`), has fewer blocks per
stage (`mbv2_blocks`) and a smaller last layer (`mbv2_last`).

Other choices:
- The official MobileNetV2 pools with `AvgPool2d(input_size // 32)` = `AvgPool2d(7)`, a global
  average only at 224 px (the official input size); here a global average at any size.
- Initialisation as the official classes: MobileNetV2 convs N(0, sqrt(2 / (k*k*out))), BN 1/0;
  every Linear at PyTorch's default (the official `kaiming_normal_` loops never run: they start at
  module index 3 of modules with at most 2 children at that point); the theme ResNet as
  torchvision's (it is replaced by loaded or pre-trained weights anyway).
- Dropout p = 0.75 in the three ReLU-Dropout-Linear heads and 0.5 in the target net, as the code.

Weights (local files; `weights` maps a part to a path):
- `theme`: the Places365 ResNet-18 in the official `.pth.tar` layout
  (`{'state_dict': {'module.conv1.weight': ..., 'module.fc.weight': (365, 512)}}`, the file the
  official `resnet365_backbone` reads), or a plain state dict of `theme_network(**config)`.
- `backbone`: an ImageNet MobileNetV2 in the layout the official code loads
  (`mobilenetv2.pth.tar` of tonylins/pytorch-mobilenet-v2, also used by truskovskiyk/nima.pytorch:
  `features.0-18.*`, `classifier.1.*`, whose first block keeps its expansion 1x1 conv), or
  nima.pytorch's `base_model.0.*`. The classifier is dropped. torchvision's `mobilenet_v2` layout
  is a different network (no expansion conv in the first block, ReLU6 in the stem) and is refused.
  The released official code builds MobileNetV2 with `pretrained=False`.
- `auto`: recognised by its keys: TANet's released AVA state dict (`code/AVA/SRCC_758_LCC_765.pth`,
  459 keys; fusion head Linear(30, 10): head "logits"), its released TAD66K file
  (`code/TAD66K/SRCC_513_LCC_531_MSE_016.pth`, the same keys with a fusion head Linear(30, 1):
  head "score"; its theme branch then runs in the AVA form, see the fusion head above, with the
  file's `relu7`, which the official TAD66K code registers but never uses), or either of the two
  layouts above. A fusion head that does not fit the config's head is a UserError.
`official_to_tanet` maps every layout to this module's names (one small, tested function).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from baselines.resnet import ResNet
from baselines.weights import load_checked, read_state_dict
from iaa_common import NUM_BINS, UserError

# MobileNetV2 stages (expansion t, channels c, stride s); blocks per stage come from the config.
MBV2_STAGES = ((1, 16, 1), (6, 24, 2), (6, 32, 2), (6, 64, 2), (6, 96, 1), (6, 160, 2), (6, 320, 1))
THEME_DIM = 10  # outputs of the theme branch (the official AdaptiveAvgPool2d((10, 1)))
TARGET_NETS = ("per_image", "batch")
HEAD_OUTPUTS = {"logits": NUM_BINS, "score": 1}  # head -> outputs of the fusion layer


# ---------------------------------------------------------------------------------------------
# Theme network: a torchvision-layout ResNet of BasicBlocks (ResNet-18 at paper), shared with BIAA


def theme_network(
    theme_classes: int,
    theme_widths: list[int] = (64, 128, 256, 512),
    theme_blocks: list[int] = (2, 2, 2, 2),
    **_other,
) -> ResNet:
    """The standalone theme classifier (image -> `theme_classes` logits), exactly the module
    TANet holds as `res365_last`: its `state_dict()` saved to a file loads into TANet as weights
    part `theme`. Takes the model's whole config and ignores the keys that are not its own.

    At paper it is the Places365 ResNet-18 (load the official file instead of training it). At cpu
    and smoke the harness pre-trains it on the embedded benchmark's scene category (10 classes):
    cross-entropy on the scene id, the model's input pipeline (img_size, ImageNet normalisation,
    flips), then freezes it inside TANet.
    """
    return ResNet(theme_widths, theme_blocks, theme_classes)


# ---------------------------------------------------------------------------------------------
# Aesthetics branch: MobileNetV2 in the layout of the ImageNet file TANet's code loads


def _mbv2_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _InvertedResidual(nn.Module):
    """1x1 expand (kept at t = 1, as in the official class) - 3x3 depthwise - 1x1 project."""

    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        mid = cin * t
        self.use_res_connect = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, mid, 1, 1, 0, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU6(inplace=True),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU6(inplace=True),
            nn.Conv2d(mid, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)
    )


def mobilenet_v2_features(width: float, blocks: list[int], last: int) -> nn.Sequential:
    """The `features` of the official MobileNetV2 (stem, inverted residuals, 1x1 to `last`)."""
    if len(blocks) != len(MBV2_STAGES):
        raise ValueError(f"mbv2_blocks needs {len(MBV2_STAGES)} entries, got {blocks}")
    cin = int(32 * width)
    layers: list[nn.Module] = [_conv_bn_relu(3, cin, 3, 2)]
    for (t, c, s), n in zip(MBV2_STAGES, blocks, strict=True):
        cout = int(c * width)
        for i in range(n):
            layers.append(_InvertedResidual(cin, cout, s if i == 0 else 1, t))
            cin = cout
    layers.append(_conv_bn_relu(cin, last, 1, 1))
    features = nn.Sequential(*layers)
    _mbv2_init(features)
    return features


class _AestheticsBranch(nn.Module):
    """Official `L5`: base_model = [MobileNetV2 features, pool]; head = ReLU-Dropout-Linear."""

    def __init__(self, width: float, blocks: list[int], last: int, dropout: float):
        super().__init__()
        self.base_model = nn.Sequential(
            mobilenet_v2_features(width, blocks, last), nn.AdaptiveAvgPool2d(1)
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(last, NUM_BINS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.base_model(x), 1))


# ---------------------------------------------------------------------------------------------
# Theme branch heads: hypernetwork (L1) and target network (L2, L3)


class _HyperNet(nn.Module):
    """Official `L1`: the per-image weights (H) and bias (1) of the target layer."""

    def __init__(self, theme_classes: int, hidden: int):
        super().__init__()
        self.last_out_w = nn.Linear(theme_classes, hidden)
        self.last_out_b = nn.Linear(theme_classes, 1)

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.last_out_w(t), self.last_out_b(t)


class _TargetNet(nn.Module):
    """Official `TargetNet` (L2 then L3); see the module docstring for `per_image` / `batch`."""

    def __init__(self, theme_classes: int, hidden: int, mode: str):
        super().__init__()
        if mode not in TARGET_NETS:
            raise ValueError(f"target_net must be one of {TARGET_NETS}, got {mode!r}")
        if mode == "per_image" and hidden % THEME_DIM:
            raise ValueError(f"hidden must be a multiple of {THEME_DIM} (per_image), got {hidden}")
        self.mode = mode
        self.fc1 = nn.Linear(theme_classes, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.relu1 = nn.PReLU()
        self.drop1 = nn.Dropout(0.5)
        if mode == "per_image":
            self.bn7 = nn.BatchNorm1d(THEME_DIM, affine=False)
        self.relu7 = nn.PReLU()

    def forward(self, t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.mode == "batch" and len(t) == 1:
            raise ValueError(
                "TANet's official theme branch (target_net = 'batch') normalises over the batch: "
                "a batch of one image has no batch statistics (the official code fails too); "
                "use batches of at least two images, or target_net = 'per_image'"
            )
        h = self.drop1(self.relu1(self.bn1(self.fc1(t))))  # L2, (B, H)
        if self.mode == "per_image":
            return self.relu7(self.bn7(per_image_target(h, w, b)))
        q = h @ w.T + b  # (B, B): entry (i, j) = h_i . W_j + b_i, as F.linear(h, W, b)
        q = F.batch_norm(q, None, None, training=True)  # the unregistered BatchNorm1d(B)
        q = self.relu7(q)
        return F.adaptive_avg_pool1d(q.unsqueeze(1), THEME_DIM).squeeze(1)  # columns -> 10


def per_image_target(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Image i's own target layer h_i . W_i + b_i as 10 partial sums over consecutive blocks of
    H/10 hidden units, each with b_i / 10: (B, H), (B, H), (B, 1) -> (B, 10), rows summing to
    h_i . W_i + b_i."""
    products = (h * w).unflatten(1, (THEME_DIM, -1))
    return products.sum(-1) + b / THEME_DIM


def rgb_similarity(x: torch.Tensor, grid: int) -> torch.Tensor:
    """Official `Attention` after `AdaptiveAvgPool2d(grid)`: cosine similarity of the patch colour
    vectors, (B, 3, S, S) -> (B, grid^2, grid^2), norms clamped at 1e-8 as in the code."""
    p = F.adaptive_avg_pool2d(x, grid).flatten(2)  # (B, 3, N)
    norms = p.norm(dim=1, keepdim=True)  # (B, 1, N)
    return (p.transpose(1, 2) @ p) / (norms.transpose(1, 2) @ norms).clamp(min=1e-8)


# ---------------------------------------------------------------------------------------------


class TANet(nn.Module):
    needs: tuple[str, ...] = ()

    def __init__(
        self,
        img_size: int,
        theme_classes: int,
        theme_widths: list[int],
        theme_blocks: list[int],
        hidden: int,
        mbv2_width: float,
        mbv2_blocks: list[int],
        mbv2_last: int,
        rgb_grid: int = 12,
        dropout: float = 0.75,
        target_net: str = "per_image",
        head: str = "logits",
    ):
        super().__init__()
        if head not in HEAD_OUTPUTS:
            raise ValueError(f"TANet head must be one of {', '.join(HEAD_OUTPUTS)}, not {head!r}")
        self.img_size = img_size
        self.output = head
        self.rgb_grid = rgb_grid
        self.res365_last = theme_network(theme_classes, theme_widths, theme_blocks)
        self.res365_last.requires_grad_(False)
        self.res365_last.eval()
        self.hypernet = _HyperNet(theme_classes, hidden)
        self.tygertnet = _TargetNet(theme_classes, hidden, target_net)
        self.mobileNet = _AestheticsBranch(mbv2_width, mbv2_blocks, mbv2_last, dropout)
        self.head_rgb = nn.Sequential(
            nn.ReLU(), nn.Dropout(dropout), nn.Linear(rgb_grid**4, NUM_BINS)
        )
        fusion = [nn.ReLU(), nn.Dropout(dropout), nn.Linear(3 * NUM_BINS, HEAD_OUTPUTS[head])]
        self.head = nn.Sequential(*fusion, *([nn.Sigmoid()] if head == "score" else []))
        self.feature_dim = 3 * NUM_BINS

    def train(self, mode: bool = True) -> TANet:
        super().train(mode)
        self.res365_last.eval()  # frozen: its BatchNorm statistics never move
        return self

    def forward_features(self, x: torch.Tensor, **extras) -> torch.Tensor:
        """The 30-d concatenation [aesthetics logits, theme output, RGB softmax] that the fusion
        head reads; TFA mixes it (feature-level mixup of TANet's head input) and FLSA aligns it.
        No per-image inputs beyond pixels (`extras` is ignored)."""
        rgb = torch.softmax(self.head_rgb(rgb_similarity(x, self.rgb_grid).flatten(1)), dim=1)
        with torch.no_grad():
            t = self.res365_last(x)
        theme = self.tygertnet(t, *self.hypernet(t))
        aes = self.mobileNet(x)
        return torch.cat([aes, theme, rgb], dim=1)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        """Fusion L6: (B, 30) -> (B, 10) logits (the official softmax left to the harness) or
        (B, 1) sigmoid score / 10, as the head (`output`) says."""
        return self.head(z)

    def forward(self, x: torch.Tensor, **extras) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, **extras))


# ---------------------------------------------------------------------------------------------
# Weights

WEIGHT_PARTS = ("auto", "theme", "backbone")
THEME_PREFIX = "res365_last."
BACKBONE_PREFIX = "mobileNet.base_model.0."
OWN_KEYS = "tygertnet.bn7."  # ours (the official normaliser is unregistered): in no file


def _layout(sd: dict) -> str:
    if "hypernet.last_out_w.weight" in sd and "head.2.weight" in sd:
        return "tanet"
    if "conv1.weight" in sd and "fc.weight" in sd and any(k.startswith("layer4.") for k in sd):
        return "theme"
    if "features.1.conv.0.0.weight" in sd:
        return "torchvision_mobilenet_v2"
    if "features.0.0.weight" in sd or "base_model.0.0.0.weight" in sd:
        return "backbone"
    return "unknown"


def official_to_tanet(sd: dict[str, torch.Tensor], part: str) -> dict[str, torch.Tensor]:
    """Map a file's state dict (any of the layouts in the module docstring) to TANet's key names.

    `part` is "auto" (recognised by the keys), "theme" or "backbone". Raises ValueError with the
    reason when the layout is not the part's or not supported.
    """
    if part == "theme" and any(k.startswith(THEME_PREFIX) for k in sd):
        return {k: v for k, v in sd.items() if k.startswith(THEME_PREFIX)}  # a TANet file
    if part == "backbone" and any(k.startswith(BACKBONE_PREFIX) for k in sd):
        return {k: v for k, v in sd.items() if k.startswith(BACKBONE_PREFIX)}
    layout = _layout(sd)
    if layout == "torchvision_mobilenet_v2":
        raise ValueError(
            "torchvision's MobileNetV2 layout (its first block has no expansion conv): TANet's "
            "MobileNetV2 reads the tonylins/nima.pytorch 'mobilenetv2.pth.tar' layout"
        )
    if part != "auto" and layout not in (part, "tanet"):
        raise ValueError(f"not a {part} layout (looks like: {layout})")
    if layout == "tanet":
        if part != "auto":  # handled above when the prefix is present
            raise ValueError(f"a TANet state dict without {part} keys")
        return dict(sd)
    if layout == "theme":
        return {THEME_PREFIX + k: v for k, v in sd.items()}
    if layout == "backbone":
        out = {}
        for k, v in sd.items():
            for prefix in ("features.", "base_model.0."):
                if k.startswith(prefix):
                    out[BACKBONE_PREFIX + k.removeprefix(prefix)] = v
        return out  # the ImageNet classifier / NIMA head is not part of TANet
    raise ValueError(
        "unrecognised layout (expected TANet's released state dict, a Places365/theme ResNet or "
        "an ImageNet MobileNetV2 in the official layout)"
    )


def load_weights(model: TANet, part: str, path: Path) -> None:
    """Load a weights file as `part` ("auto", "theme" or "backbone"), which must cover the part
    (for "auto": what the recognised file is) with the model's shapes."""
    try:
        state = official_to_tanet(read_state_dict(path), part)
    except ValueError as err:
        raise UserError(f"{path}: {err}") from None
    fusion = state.get("head.2.weight")
    if fusion is not None and fusion.shape != model.head[2].weight.shape:
        raise UserError(
            f"{path}: its fusion head Linear(30, {fusion.shape[0]}) does not fit head "
            f"'{model.output}' (TANet's AVA release: 10 outputs, head 'logits'; its TAD66K "
            "release: 1 output, head 'score')"
        )
    prefix = {"theme": THEME_PREFIX, "backbone": BACKBONE_PREFIX}.get(part)
    if prefix is None:  # auto: the scope is what the recognised file covers
        prefix = next(
            (p for p in (THEME_PREFIX, BACKBONE_PREFIX) if all(k.startswith(p) for k in state)),
            "",
        )
    load_checked(
        model,
        state,
        path,
        "a TANet file for this config",
        lambda key: key.startswith(prefix) and not key.startswith(OWN_KEYS),
    )


def build(weights: dict[str, Path] | None = None, **config) -> TANet:
    """The registry's entry point (configs in models.toml)."""
    model = TANet(**config)
    for part, path in (weights or {}).items():
        load_weights(model, part, path)
    return model
