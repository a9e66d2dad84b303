"""HLA-GCN, the "HGCN" baseline (She et al., CVPR 2021, "Hierarchical Layout-Aware Graph
Convolutional Network for Unified Aesthetics Assessment").

The only public code is Jittor (shedy-pub/hlagcn-jittor: `utils_jittor/model.py` `HLAGCN`,
`resnet50hlagcn`; `utils_jittor/hlagcn_layer.py` `HLAGraphConvolution`, `LAGCN1_Layer`,
`LAGCN2_Layer`, `spatial_batch_matrix`; `utils_jittor/train_jittor.py`, `parameter.py`,
`script/train_jittor_ava.sh`). This is our own PyTorch, module for module, with the official
attribute names so that its state dicts line up key for key.

Wiring (paper profile: 300 px warped input, 10 x 10 = 100 spatial nodes)
  ResNet-50 (torchvision Bottleneck layout, `conv1 bn1 layer1..layer4`), layer4 map (B, 2048, h, w)
  -> `conv1x1`: 1x1 conv to 1024 channels, no bias
  -> `lagcn1` (LA-GCN1): `gcn_blocks` blocks over the h*w spatial nodes, each
         x <- W(A x + x),   A = (softmax_rows(T1 x (T2 x)^T) + A_spatial) / 2
     with bias-free linears T1 = `trans_1`, T2 = `trans_2`, W; ReLU between blocks, none after the
     last. The scripts pass `--gcnlayer 3` (parameter.py's default too); `resnet50hlagcn`'s own
     default is gcn_num=1, a trap: we use 3 at paper (40.33M parameters; 1 block gives 34.04M).
  -> o1 = global average pool                                           (B, 1024)
  -> `lagcn2` (LA-GCN2, GloRe-style): `conv_state` 1x1 to S=1024 (bias), `conv_proj` 1x1 to K=25
     latent nodes (bias); node states = state (B,S,hw) @ proj^T (B,hw,K) (no 1/hw normalisation,
     as the code); one content-only block on the K nodes (same T1/T2/W block, A = content
     adjacency only); back-projection nodes^T @ proj; `conv_extend` 1x1 S->1024 (no bias);
     `blocker` BatchNorm2d(eps 1e-4). Its output *replaces* x: no residual, as the code.
  -> o2 = global average pool                                           (B, 1024)
  -> heads `aesfc1`(o1), `aesfc2`(o2): Linear(1024, 10) each; the official model returns
     (softmax(aesfc1 o1) + softmax(aesfc2 o2)) / 2 and trains EMD (r=2) on that average.

Spatial adjacency (`spatial_adjacency`), exactly as `generate_spatial_square` +
`spatial_batch_matrix`: nodes are the flattened map, row-major, node k = (i, j) = (k // w, k % w)
with i the row (height axis) and j the column. `x_square` is the squared difference of the *outer
loop* index, i.e. of rows; it is the one multiplied by r^2, with r = PIL `size[0] / size[1]` =
original width / height of each image (`dataset.py`). So
    d_kl = sqrt(r^2 (i_k - i_l)^2 + (j_k - j_l)^2),
    A_kl = (max_m d_km - d_kl) / (sum_m (max_m' d_km' - d_km) + 1e-8)
(row-normalised; the farthest node of each row gets 0, the node itself the largest weight). The
code takes the max over dim 1 and broadcasts it along rows; d is symmetric, so that is the row max.
What that means geometrically: after the warp, a cell spans W/w original pixels horizontally and
H/h vertically, so on a square map the true distance in cell heights is sqrt(dr^2 + r^2 dc^2);
the code stretches the *row* axis instead, i.e. it gives a wide image (r > 1) the layout of its
transpose (vertical neighbours count as farther apart than horizontal ones). We reproduce the
code, since that is the model that was trained and published; DEVIATIONS.md notes it. The ratio
arrives per image as the keyword extra `aspect` (B,) (`needs = ("aspect",)`); everything is
batched (B, N, N).

Content adjacency: softmax over the last axis of (T1 x)(T2 x)^T with no 1/sqrt(d) scaling, as the
code. The node count follows the feature map (nothing is tied to 100 nodes): 10 x 10 at 300 px;
the official class hard-codes 100 nodes and so only runs at 300 px.

Output. Our surface returns logits; `forward_head` returns log((softmax(a) + softmax(b)) / 2)
(a, b: the two heads' logits), a vector of log-probabilities whose softmax is exactly the official
averaged distribution, so the harness's softmax-then-loss (EMD r=2, MSE on the expected score)
trains exactly the official objective.

Pooled feature (where ELTA's TFA and FLSA, FDS and RankSim attach): z = [o1, o2], (B, 2 * 1024),
the two GAP vectors that the two heads read; `forward_head` splits it. ELTA attaches to the
representation right before the classifier; here there are two, one per head, and the
concatenation is exactly the pair. TFA's eq. 1 is linear and coordinate-wise
(z~ = lam z_i + (1 - lam) z_j), so mixing the concatenation with one lambda is the same as mixing
o1 and o2 separately with that lambda and feeding each mixed vector to its own head. FLSA then
compares cosine similarities of the concatenation (one similarity per pair of images, as ELTA
defines it on a single feature vector).

Batch independence: in eval() every operation is per image (BatchNorm uses running statistics),
so a sample's output does not depend on its batch; in train() BatchNorm couples the batch as in
any ResNet, like the official model.

Initialisation, as `HLAGCN.__init__` leaves it: every Conv2d Kaiming-normal (fan_out, ReLU); every
BatchNorm weight 1, bias 0. That includes the LA-GCN2 `blocker`, whose comment says "should be
zero initialized" (as in GloRe, where the unit is residual) but which the global init loop sets to
1. We keep 1: with no residual a zero blocker would zero o2 at start (the code's effective
behaviour is 1; `blocker_init` changes it). Linear layers: U(-1/sqrt(in), 1/sqrt(in)) weights,
which is both `HLAGraphConvolution.reset_parameters('uniform')` and Jittor's/PyTorch's default
Linear init; conv/linear biases keep PyTorch's default.

Smaller profiles (same module types and wiring): cpu = Bottleneck ResNet with [1,1,1,1] blocks,
planes 16/32/64/128 (512 out), 1x1 to 128, LA-GCN1 with 3 blocks, LA-GCN2 with 4 latent nodes, at
48 px. A stride-2 layer4 would leave a 2 x 2 map at 48 px, so cpu and smoke set torchvision's
`replace_stride_with_dilation = [false, false, true]`: layer4 keeps stride 1 (its first block has
dilation 1, later blocks dilation 2), giving 3 x 3 = 9 nodes at 48 px and 2 x 2 = 4 at 32 px.

Weights (local files only; `weights` maps a part to a path):
- `backbone`: an ImageNet ResNet-50 state dict in torchvision's layout (`conv1`, `bn1`,
  `layer1..4`, `fc`; `fc` is dropped). Jittor's hub ResNet-50 (`jittorhub://resnet50.pkl`, what
  the official code loads) uses the same names (jittor `models/resnet.py`, generated from
  torchvision), so either file works.
- `auto`: recognised by its keys: the backbone layout above, or a whole HLA-GCN model under the
  official names (`conv1 bn1 layer1-4 conv1x1 lagcn1.gcns.<i>.{trans_1,trans_2,W}
  lagcn2.{conv_state,conv_proj,gcn,conv_extend,blocker} aesfc1 aesfc2`), e.g. the authors'
  `checkpoint_epoch_020.pth.tar` = {'epoch','arch','val','state_dict'}. No trained HLA-GCN
  checkpoint was released. Files are read by baselines/weights.py: PyTorch files, and the
  files `jittor.save` writes (a pickle of numpy arrays followed by a SHA-1 and a tag; the
  checksum is verified) or plain pickles of numpy arrays, without Jittor and without unpickling
  any code. Jittor's state dicts also hold the constant grids
  `lagcn1.gcns.<i>.{x_square,y_square}`; those are recomputed here and ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from baselines.weights import load_checked, read_state_dict
from iaa_common import NUM_BINS, UserError

# --------------------------------------------------------------------------------------------
# Adjacencies


def spatial_adjacency(
    aspect: torch.Tensor, height: int, width: int, eps: float = 1e-8
) -> torch.Tensor:
    """The layout (spatial) adjacency of `spatial_batch_matrix`, batched: (B, N, N), N = h * w.

    aspect: (B,) original width / height of each image; it scales the *row* difference, as the
    official code does (see the module docstring)."""
    device, dtype = aspect.device, aspect.dtype
    rows = torch.arange(height, device=device, dtype=dtype).repeat_interleave(width)
    cols = torch.arange(width, device=device, dtype=dtype).repeat(height)
    drow2 = (rows[:, None] - rows[None, :]) ** 2  # (N, N)
    dcol2 = (cols[:, None] - cols[None, :]) ** 2
    dist = torch.sqrt(aspect.reshape(-1, 1, 1) ** 2 * drow2 + dcol2)  # (B, N, N)
    closeness = dist.amax(dim=2, keepdim=True) - dist
    return closeness / (closeness.sum(dim=2, keepdim=True) + eps)


class LayoutGCNBlock(nn.Module):
    """One `HLAGraphConvolution`: x <- W(A x + x) on (B, N, C) nodes, bias-free linears.

    A = softmax_rows((T1 x)(T2 x)^T), averaged with a spatial adjacency when one is given."""

    def __init__(self, dim: int):
        super().__init__()
        self.trans_1 = nn.Linear(dim, dim, bias=False)
        self.trans_2 = nn.Linear(dim, dim, bias=False)
        self.W = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, spatial: torch.Tensor | None = None) -> torch.Tensor:
        adj = torch.softmax(self.trans_1(x) @ self.trans_2(x).transpose(1, 2), dim=2)
        if spatial is not None:
            adj = (adj + spatial) / 2
        return self.W(adj @ x + x)


class LAGCN1(nn.Module):
    """`LAGCN1_Layer`: `len(gcns)` blocks over the spatial nodes of a (B, C, h, w) map, ReLU
    between blocks; content + layout adjacency."""

    def __init__(self, dim: int, blocks: int):
        super().__init__()
        self.gcns = nn.ModuleList(LayoutGCNBlock(dim) for _ in range(blocks))

    def forward(self, x: torch.Tensor, aspect: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        spatial = spatial_adjacency(aspect.to(x.dtype), h, w)  # the same for every block
        nodes = x.flatten(2).transpose(1, 2)  # (B, N, C), row-major nodes
        for i, gcn in enumerate(self.gcns):
            nodes = gcn(nodes, spatial)
            if i < len(self.gcns) - 1:
                nodes = F.relu(nodes)
        return nodes.transpose(1, 2).reshape(b, c, h, w)


class LAGCN2(nn.Module):
    """`LAGCN2_Layer`: GloRe-style reasoning over `latent_nodes` projected nodes; its output
    replaces its input (no residual), as the official code."""

    def __init__(self, channels: int, state_dim: int, latent_nodes: int):
        super().__init__()
        self.conv_state = nn.Conv2d(channels, state_dim, kernel_size=1)
        self.conv_proj = nn.Conv2d(channels, latent_nodes, kernel_size=1)
        self.gcn = LayoutGCNBlock(state_dim)
        self.conv_extend = nn.Conv2d(state_dim, channels, kernel_size=1, bias=False)
        self.blocker = nn.BatchNorm2d(channels, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        state = self.conv_state(x).flatten(2)  # (B, S, hw)
        proj = self.conv_proj(x).flatten(2)  # (B, K, hw)
        nodes = (state @ proj.transpose(1, 2)).transpose(1, 2)  # (B, K, S)
        nodes = self.gcn(nodes)  # content adjacency only
        back = nodes.transpose(1, 2) @ proj  # (B, S, hw)
        return self.blocker(self.conv_extend(back.reshape(b, -1, h, w)))


# --------------------------------------------------------------------------------------------
# Backbone: torchvision's ResNet Bottleneck layout, any widths


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, dilation: int, downsample):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


# --------------------------------------------------------------------------------------------
# The model

BACKBONE_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")


class HLAGCN(nn.Module):
    """HLA-GCN with the registry's surface (see the module docstring)."""

    needs: tuple[str, ...] = ("aspect",)

    def __init__(
        self,
        img_size: int,
        layers: Sequence[int] = (3, 4, 6, 3),
        planes: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        replace_stride_with_dilation: Sequence[bool] = (False, False, False),
        gcn_dim: int = 1024,
        gcn_blocks: int = 3,
        latent_nodes: int = 25,
        blocker_init: float = 1.0,
    ):
        super().__init__()
        self.img_size = img_size
        self.gcn_dim = gcn_dim
        self.feature_dim = 2 * gcn_dim
        # backbone, torchvision names
        self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._inplanes, self._dilation = stem_width, 1
        dilate = (False, *replace_stride_with_dilation)
        for i, (n, p) in enumerate(zip(layers, planes, strict=True)):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", self._make_layer(p, n, stride, dilate[i]))
        # HLA-GCN
        self.conv1x1 = nn.Conv2d(self._inplanes, gcn_dim, 1, bias=False)
        self.lagcn1 = LAGCN1(gcn_dim, gcn_blocks)
        self.lagcn2 = LAGCN2(gcn_dim, gcn_dim, latent_nodes)
        self.aesfc1 = nn.Linear(gcn_dim, NUM_BINS)
        self.aesfc2 = nn.Linear(gcn_dim, NUM_BINS)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.lagcn2.blocker.weight, blocker_init)

    def _make_layer(self, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        """torchvision's `_make_layer`, including `replace_stride_with_dilation`."""
        previous_dilation = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        out = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self._inplanes != out:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )
        layers = [Bottleneck(self._inplanes, planes, stride, previous_dilation, downsample)]
        self._inplanes = out
        layers += [Bottleneck(out, planes, 1, self._dilation, None) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_features(self, x: torch.Tensor, aspect: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled feature [o1, o2]: (B, 2 * gcn_dim), the GAP of LA-GCN1's output and the GAP
        of LA-GCN2's output, i.e. exactly the inputs of the two heads. ELTA's TFA / FLSA attach
        here because this is the representation right before the classifiers; mixing it with one
        lambda equals mixing o1 and o2 separately (TFA's eq. 1 is linear and coordinate-wise).

        aspect: (B,) (or (B, 1)) original width / height of each image; required."""
        if aspect is None:
            raise TypeError(
                "HLA-GCN needs the keyword extra `aspect`: (B,) original width / height per image"
            )
        aspect = aspect.reshape(x.shape[0]).to(device=x.device, dtype=x.dtype)
        x = self.conv1x1(self.backbone(x))
        x = self.lagcn1(x, aspect)
        o1 = x.mean(dim=(2, 3))
        o2 = self.lagcn2(x).mean(dim=(2, 3))
        return torch.cat([o1, o2], dim=1)

    def branch_logits(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two heads' logits (aesfc1 on o1, aesfc2 on o2)."""
        o1, o2 = z.split(self.gcn_dim, dim=1)
        return self.aesfc1(o1), self.aesfc2(o2)

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        """log((softmax(aesfc1 o1) + softmax(aesfc2 o2)) / 2): log-probabilities whose softmax is
        exactly the official averaged output distribution."""
        a, b = self.branch_logits(z)
        both = torch.stack([F.log_softmax(a, dim=1), F.log_softmax(b, dim=1)])
        return torch.logsumexp(both, dim=0) - math.log(2.0)

    def forward(self, x: torch.Tensor, aspect: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, aspect=aspect))


# --------------------------------------------------------------------------------------------
# Weights

WEIGHT_PARTS = ("auto", "backbone")
_JITTOR_CONSTANTS = ("x_square", "y_square")  # constant distance grids in Jittor state dicts
_HLAGCN_PREFIXES = ("conv1x1.", "lagcn1.", "lagcn2.", "aesfc1.", "aesfc2.")


def official_to_model(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A file's state dict -> ours: drops Jittor's constant grids and the ImageNet classifier
    `fc.*`. Our module names are the official ones, so no renaming is needed."""
    return {
        key: value
        for key, value in state.items()
        if not key.startswith("fc.") and key.rsplit(".", 1)[-1] not in _JITTOR_CONSTANTS
    }


def load_weights(model: HLAGCN, part: str, path: Path) -> None:
    """Load a weights file: `backbone` (an ImageNet ResNet-50 state dict) or `auto`
    (recognised by its keys: an ImageNet ResNet-50, or a whole HLA-GCN under the official
    names)."""
    state = official_to_model(read_state_dict(path))
    if part == "auto" and any(k.startswith(_HLAGCN_PREFIXES) for k in state):
        prefixes, what = BACKBONE_PREFIXES + _HLAGCN_PREFIXES, "an HLA-GCN model"
    elif "layer4.0.conv1.weight" in state:
        prefixes, what = BACKBONE_PREFIXES, "a ResNet-50 backbone"
    else:
        raise UserError(
            f"{path}: unrecognised layout for hgcn part '{part}': expected an ImageNet "
            "ResNet-50 state dict (conv1, bn1, layer1-4) or an HLA-GCN checkpoint "
            "(..., conv1x1, lagcn1, lagcn2, aesfc1, aesfc2)"
        )
    state = {k: v for k, v in state.items() if k.startswith(prefixes)}
    load_checked(
        model, state, path, f"{what} for this config", lambda key: key.startswith(prefixes)
    )


def build(weights: dict[str, Path] | None = None, **config) -> HLAGCN:
    """The registry's entry point (configs in models.toml)."""
    model = HLAGCN(**config)
    for part, path in (weights or {}).items():
        load_weights(model, part, path)
    return model
