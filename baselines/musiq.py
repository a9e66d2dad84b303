"""MUSIQ: Multi-scale Image Quality Transformer (Ke et al., ICCV 2021), baseline of Tables 1, 3.

Written from the official JAX inference code (google-research/google-research: `musiq/model/
multiscale_transformer.py`, `multiscale_transformer_utils.py`, `resnet.py`, `preprocessing.py`,
`run_predict_image.py`) and checked against the PyTorch port (chaofengc/IQA-PyTorch:
`pyiqa/archs/musiq_arch.py`, `pyiqa/data/multiscale_trans_util.py`,
`scripts/convert_musiq_to_pth.py`). No training code was released (pyiqa issues #36, #49).

Input. `x` is a zero-padded batch (B, 3, H, W), ImageNet-normalised as every model of the
registry receives it; image b occupies the top-left `size[b] = (h_b, w_b)` pixels (`needs =
("size",)`; without `size` every image fills the canvas). The official code feeds [-1, 1] pixels
(`normalize_value_range`), so the model first undoes the ImageNet normalisation and maps [0, 1]
to [-1, 1]. Pixels outside `size` are never read (`size` is clamped to the canvas).

Multi-scale input, built inside the model and vectorised over the batch (no loop over images):
for each longer side L in sorted(`scales`) the image is resized with its aspect ratio kept
(rh = round(h * L / max(h, w)), half to even like `tf.round`), then the native image. Each scale
is cut into P x P patches the way `tf.image.extract_patches(padding="SAME")` does: ceil(rh/P) x
ceil(rw/P) patches with the image centred in the zero padding (pad_top = (ceil(rh/P)*P - rh)
// 2, the extra row at the bottom). One resampling matrix per image and axis does the resize, that
centring and the zero padding in two batched matmuls (`A_h @ img @ A_w^T`), onto a fixed canvas of
ceil(L/P)*P pixels per side, so a resized scale always has ceil(L/P)^2 tokens, the official
`max_seq_len`, with mask 0 outside the image's own ceil(rh/P) x ceil(rw/P) grid. The matrix
rows are TF's Gaussian resize (`tf.image.resize(method=GAUSSIAN)`, antialias off, as the
official preprocessing): radius 1.5, sigma 0.5 input pixels, half-pixel centres, weights over
in-image pixels normalised to sum 1 (tensorflow/core/kernels/image/scale_and_translate_op.cc);
pyiqa uses bicubic instead. The native scale keeps all of its patches (the official
`max_seq_len_from_original_res = -1`): a per-image row/column gather does the centring onto a
ceil(H/P)*P x ceil(W/P)*P canvas. Tokens sit in canvas-grid order rather than the official
packed row-major order; attention with key masks is permutation invariant, so the CLS output is
the same. Checked once against TF 2.21's own ops (tf.image.resize GAUSSIAN,
tf.image.extract_patches SAME, tf.compat.v1 nearest resize), outside the test suite, for P 8 and
32, up- and downsampling, odd sizes and padded canvases: same patches to 3e-7, same spatial
indices, masks and scale ids. Not implemented: a positive `max_seq_len_from_original_res` (a cap
on the native patches; the released config uses -1) and multi-crop averaging at evaluation.

Per token: the hashed 2-D spatial embedding (a G x G table; row index = TF1 nearest-neighbour
resize of arange(G) to the image's patch rows, floor(i * G / count) in float32, the same for
columns; index = row * G + col), the scale embedding (ids: sorted resized scales 0.., native
last), a CLS token (zero init), a pre-LN transformer encoder whose attention ignores padded
tokens (boolean key mask; the CLS token is always valid, so no row is fully masked), a final
LayerNorm (eps 1e-6). GELU is the tanh approximation (`jax.nn.gelu` default, which the official
`flax.nn.gelu` is); pyiqa uses the exact GELU.

Patch encoder (official `resnet_emb.num_layers = 5`): StdConv 7x7 s2 (`stem_width`, 64) +
GroupNorm(32, eps 1e-6) + ReLU + max-pool 3x3 s2, then one bottleneck unit (1x1, 3x3, 1x1 to
4 x width, projection shortcut; StdConv + GroupNorm(32, eps 1e-4), the last GroupNorm's scale
zero-initialised). A narrower stem (the cpu profile's width 32) keeps the official channels per
group (width / 2 groups). All convolutions and the pool use TF "SAME" padding (asymmetric: the extra
pixel at the bottom/right), not PyTorch's symmetric padding. Weight standardisation is
(w - mean) / (std + 1e-5) over each output channel's (H, W, in) with the biased std of
`jnp.std` (pyiqa uses the unbiased one). The (P/4, P/4, 4 x width) map is flattened in the
official H, W, C order and a Linear maps it to D.

Pooled feature (where ELTA's TFA / FLSA, FDS and RankSim attach): the CLS token after the
encoder's final LayerNorm, (B, D). It is the only tensor the official head reads (`x[:, 0]`,
`representation_size=None`, so no pre-logits layer), the same place as a ViT's pooled feature.
Head: Linear(D, 10), zero-initialised as the official head; it returns logits (the official
AVA model is trained with EMD on softmax(head)). Dropout rates default to 0, the released
config's; the training rates are not public.

Weights (`build(weights={"auto": path})` or part `"backbone"`), recognised by their keys:
- pyiqa's released files: `musiq_ava_ckpt-e8d3f067.pth` (head `head.0`, 10 bins: loaded as
  released by `auto`), `musiq_imagenet_pretrain-51d9b0a5.pth` (`imagenet_head.*`, 1000 classes,
  beside an unconverted random `head.*` of 1 output: both skipped), and its KonIQ / SPAQ /
  PaQ-2-PiQ files (one-output head: skipped);
- the official JAX `.npz` files (`ava_ckpt.npz`, `imagenet_pretrain.npz`, ...; keys
  `opt/target/...`), mapped with numpy alone: conv kernels HWIO -> OIHW, dense kernels
  (in, out) -> (out, in), attention query/key/value kernels (D, heads, head_dim) -> (D, D)^T and
  biases (heads, head_dim) -> (D,), attention out kernel (heads, head_dim, D) -> (D, D)^T,
  `scale_embedding` (1, S, D) -> (S, D), GroupNorm/LayerNorm `scale` -> weight.
Part `backbone` never loads the head. A head is loaded only when it has 10 outputs.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines.weights import load_checked, read_state_dict
from iaa_common import IMAGENET_MEAN, IMAGENET_STD, NUM_BINS, UserError

GAUSS_RADIUS = 1.5  # tf GaussianKernelFunc: radius 1.5, sigma = radius / 3
GAUSS_SIGMA = 0.5


# --------------------------------------------------------------------------- patch encoder


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' padding of one axis: (before, after), the extra pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class StdConv2d(nn.Conv2d):
    """Weight-standardised convolution with TF 'SAME' padding (official `resnet.StdConv`)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__(cin, cout, kernel, stride, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (k, _), (s, _) = self.kernel_size, self.stride
        top, bottom = _same_pad(x.shape[-2], k, s)
        left, right = _same_pad(x.shape[-1], k, s)
        x = F.pad(x, (left, right, top, bottom))
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        std = w.std(dim=(1, 2, 3), keepdim=True, correction=0)  # jnp.std: biased
        return F.conv2d(x, (w - mean) / (std + 1e-5), None, self.stride)


def gn_groups(stem_width: int) -> int:
    """GroupNorm groups: 32 (flax's default) at the official width 64; a narrower stem keeps the
    official channels per group (2 in the root and width layers, 8 in the 4 x width layers)."""
    return max(1, stem_width // 2)


class Bottleneck(nn.Module):
    """The official `ResidualUnit` (bottleneck, stride 1) with a projection shortcut."""

    def __init__(self, width: int):
        super().__init__()
        out, groups = 4 * width, gn_groups(width)
        self.conv1 = StdConv2d(width, width, 1)
        self.gn1 = nn.GroupNorm(groups, width, eps=1e-4)
        self.conv2 = StdConv2d(width, width, 3)
        self.gn2 = nn.GroupNorm(groups, width, eps=1e-4)
        self.conv3 = StdConv2d(width, out, 1)
        self.gn3 = nn.GroupNorm(groups, out, eps=1e-4)
        self.conv_proj = StdConv2d(width, out, 1)
        self.gn_proj = nn.GroupNorm(groups, out, eps=1e-4)
        nn.init.zeros_(self.gn3.weight)  # official: scale_init=zeros on the last norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.gn_proj(self.conv_proj(x))
        y = F.relu(self.gn1(self.conv1(x)))
        y = F.relu(self.gn2(self.conv2(y)))
        return F.relu(shortcut + self.gn3(self.conv3(y)))


def _max_pool_same(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-2 max-pool with TF 'SAME' padding (padding never wins the max). On an even
    size SAME pads (0, 1), which is what ceil_mode does, without the copy of a pad."""
    if x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0:
        return F.max_pool2d(x, 3, 2, ceil_mode=True)
    top, bottom = _same_pad(x.shape[-2], 3, 2)
    left, right = _same_pad(x.shape[-1], 3, 2)
    x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
    return F.max_pool2d(x, 3, 2)


# --------------------------------------------------------------------------- transformer


class SelfAttention(nn.Module):
    """Multi-head self-attention; `key_mask` (B, N) bool, False = padding, never attended."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query, self.key, self.value = (nn.Linear(dim, dim) for _ in range(3))
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=key_mask[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class EncoderBlock(nn.Module):
    """Pre-LN block: x + Attn(LN(x)), then x + MLP(LN(x)) (official `Encoder1DBlock`)."""

    def __init__(self, dim: int, mlp_dim: int, heads: int, dropout: float, attn_dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = SelfAttention(dim, heads, attn_dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(dim, mlp_dim), nn.Linear(mlp_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attention(self.norm1(x), key_mask))
        y = self.drop(F.gelu(self.mlp.fc1(self.norm2(x)), approximate="tanh"))
        return x + self.drop(self.mlp.fc2(y))


class HashSpatialEmbedding(nn.Module):
    def __init__(self, grid: int, dim: int):
        super().__init__()
        self.position_emb = nn.Parameter(torch.randn(1, grid * grid, dim) * 0.02)


class ScaleEmbedding(nn.Module):
    def __init__(self, n_scales: int, dim: int):
        super().__init__()
        self.scale_emb = nn.Parameter(torch.randn(n_scales, dim) * 0.02)


class TransformerEncoder(nn.Module):
    def __init__(self, dim, mlp_dim, heads, layers, n_scales, grid, dropout, attn_dropout):
        super().__init__()
        self.posembed_input = HashSpatialEmbedding(grid, dim)
        self.scaleembed_input = ScaleEmbedding(n_scales, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.dropout = nn.Dropout(dropout)
        self.transformer = nn.ModuleDict(
            {
                f"encoderblock_{i}": EncoderBlock(dim, mlp_dim, heads, dropout, attn_dropout)
                for i in range(layers)
            }
        )
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, tokens, spatial_index, scale_index, mask) -> torch.Tensor:
        x = tokens + self.posembed_input.position_emb[0][spatial_index]
        x = x + self.scaleembed_input.scale_emb[scale_index]
        b = x.shape[0]
        x = torch.cat([self.cls.expand(b, -1, -1), x], dim=1)
        mask = torch.cat([mask.new_ones(b, 1), mask], dim=1)
        x = self.dropout(x)
        for block in self.transformer.values():
            x = block(x, mask)
        return self.encoder_norm(x)


# --------------------------------------------------------------------------- multi-scale input


def gaussian_resize_matrix(
    in_len: torch.Tensor, out_len: torch.Tensor, offset: torch.Tensor, canvas: int, max_in: int
) -> torch.Tensor:
    """Per-image resampling matrices (B, canvas, max_in) of TF's Gaussian resize, antialias off.

    Row i of image b is output pixel r = i - offset[b] of a resize from in_len[b] to
    out_len[b] pixels (zero outside 0 <= r < out_len[b]); it weighs input pixel j by
    exp(-d^2 / (2 sigma^2)) for |d| < 1.5, d = (j + 0.5) - (r + 0.5) * in_len / out_len, over the
    pixels j < in_len[b], normalised to sum 1 (TF's scale_and_translate spans).
    """
    device = in_len.device
    r = torch.arange(canvas, device=device)[None, :] - offset[:, None]  # (B, canvas)
    inside = (r >= 0) & (r < out_len[:, None])
    scale = out_len.float() / in_len.float()  # float32, as TF
    sample = (r.float() + 0.5) * torch.reciprocal(scale)[:, None]  # TF: inv_scale = 1 / scale
    j = torch.arange(max_in, device=device)
    dist = (j.float() + 0.5)[None, None, :] - sample[:, :, None]  # (B, canvas, max_in)
    keep = (dist.abs() < GAUSS_RADIUS) & (j[None, None, :] < in_len[:, None, None])
    w = torch.exp(-(dist**2) / (2 * GAUSS_SIGMA**2)) * keep
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-30)
    return w * inside[..., None]


def hashed_index(counts: torch.Tensor, length: int, grid: int) -> torch.Tensor:
    """(B, length) hash rows of positions 0..length-1 for images with `counts` patches: TF1
    nearest-neighbour resize of arange(grid) to counts, min(floor(i * (grid / count)), grid - 1)
    in float32 (positions past an image's count are clamped and masked elsewhere)."""
    i = torch.arange(length, device=counts.device).float()
    # a true float32 division, as TF's `in / out` (python `grid / t` would multiply by 1 / t)
    ratio = torch.full_like(counts, grid, dtype=torch.float32) / counts.float()
    return torch.floor(i[None, :] * ratio[:, None]).long().clamp(0, grid - 1)


def _centre_gather(img: torch.Tensor, lengths: torch.Tensor, offset: torch.Tensor, canvas: int,
                   dim: int) -> torch.Tensor:  # fmt: skip
    """Shift each image by `offset` along `dim` (2: rows, 3: columns) onto `canvas` pixels,
    zero outside its `lengths` valid pixels (a per-image gather, no interpolation)."""
    src = torch.arange(canvas, device=img.device)[None, :] - offset[:, None]  # (B, canvas)
    valid = (src >= 0) & (src < lengths[:, None])
    src = src.clamp(0, img.shape[dim] - 1)
    b, c, h, w = img.shape
    if dim == 2:
        index = src[:, None, :, None].expand(b, c, canvas, w)
        return img.gather(2, index) * valid[:, None, :, None]
    index = src[:, None, None, :].expand(b, c, h, canvas)
    return img.gather(3, index) * valid[:, None, None, :]


# --------------------------------------------------------------------------- the model


class MUSIQ(nn.Module):
    needs: tuple[str, ...] = ("size",)

    def __init__(
        self,
        img_size: int,
        patch_size: int = 32,
        scales: tuple[int, ...] = (224, 384),
        grid_size: int = 10,
        hidden_size: int = 384,
        mlp_dim: int = 1152,
        num_heads: int = 6,
        num_layers: int = 14,
        stem_width: int = 64,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
    ):
        super().__init__()
        if patch_size % 4:
            raise ValueError(f"MUSIQ patch_size must be a multiple of 4, got {patch_size}")
        self.img_size = img_size  # the square size the harness's fixed-size pipeline uses
        self.patch_size = patch_size
        self.scales = tuple(sorted(int(s) for s in scales))  # official: sorted longer sides
        self.grid_size = grid_size
        self.feature_dim = hidden_size

        self.conv_root = StdConv2d(3, stem_width, 7, 2)
        self.gn_root = nn.GroupNorm(gn_groups(stem_width), stem_width, eps=1e-6)
        self.block1 = Bottleneck(stem_width)
        token_side = patch_size // 4  # after the stride-2 conv and the stride-2 pool
        self.embedding = nn.Linear(4 * stem_width * token_side**2, hidden_size)
        self.transformer_encoder = TransformerEncoder(
            hidden_size,
            mlp_dim,
            num_heads,
            num_layers,
            len(self.scales) + 1,
            grid_size,
            dropout,
            attention_dropout,
        )
        self.head = nn.Linear(hidden_size, NUM_BINS)
        self.register_buffer(
            "pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """The official initialisers (flax): lecun-normal convolutions and embedding Linear,
        xavier-uniform attention and MLP kernels, MLP biases N(0, 1e-6), zero head."""

        def lecun_normal(weight: torch.Tensor) -> None:  # jax: truncated at 2 std
            std = math.sqrt(1.0 / weight[0].numel()) / 0.87962566
            nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)

        for m in self.modules():
            if isinstance(m, StdConv2d):
                lecun_normal(m.weight)
        lecun_normal(self.embedding.weight)
        nn.init.zeros_(self.embedding.bias)
        for block in self.transformer_encoder.transformer.values():
            att = block.attention
            for lin in (att.query, att.key, att.value, att.out):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)
            for lin in (block.mlp.fc1, block.mlp.fc2):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.normal_(lin.bias, std=1e-6)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    # ------------------------------------------------------------------ input
    def multiscale_input(self, x: torch.Tensor, size: torch.Tensor | None = None):
        """The official multi-scale patch input, for a whole batch at once.

        Returns patches (B, N, 3, P, P) in [-1, 1], spatial index (B, N), scale id (N,) and
        mask (B, N) bool; N = sum over resized scales of ceil(L/P)^2 + ceil(H/P) * ceil(W/P).
        """
        b, _, height, width = x.shape
        p, grid = self.patch_size, self.grid_size
        if size is None:
            size = torch.tensor([[height, width]], device=x.device).expand(b, 2)
        size = size.to(device=x.device, dtype=torch.long)
        h = size[:, 0].clamp(1, height)
        w = size[:, 1].clamp(1, width)
        img = (x * self.pixel_std + self.pixel_mean) * 2 - 1  # official range [-1, 1]

        pieces = []
        for scale_id, longer in enumerate(self.scales):
            longest = torch.maximum(h, w).float()
            ratio = torch.full_like(longest, longer) / longest  # float32 division, as tf
            rh = torch.round(h.float() * ratio).long().clamp_min(1)  # >= 1 for slivers
            rw = torch.round(w.float() * ratio).long().clamp_min(1)
            side = -(-longer // p)
            ch, cw = -(-rh // p), -(-rw // p)
            a_h = gaussian_resize_matrix(h, rh, (ch * p - rh) // 2, side * p, height)
            a_w = gaussian_resize_matrix(w, rw, (cw * p - rw) // 2, side * p, width)
            canvas = torch.einsum("bih,bchw,bjw->bcij", a_h.to(img), img, a_w.to(img))
            pieces.append((canvas, ch, cw, scale_id))
        gh, gw = -(-height // p), -(-width // p)
        ch, cw = -(-h // p), -(-w // p)
        canvas = _centre_gather(img, h, (ch * p - h) // 2, gh * p, dim=2)
        canvas = _centre_gather(canvas, w, (cw * p - w) // 2, gw * p, dim=3)
        pieces.append((canvas, ch, cw, len(self.scales)))

        patches, spatial, scale_ids, masks = [], [], [], []
        for canvas, ch, cw, scale_id in pieces:
            rows, cols = canvas.shape[-2] // p, canvas.shape[-1] // p
            tiles = canvas.view(b, 3, rows, p, cols, p).permute(0, 2, 4, 1, 3, 5)
            patches.append(tiles.reshape(b, rows * cols, 3, p, p))
            hash_r = hashed_index(ch, rows, grid)  # (B, rows)
            hash_c = hashed_index(cw, cols, grid)
            spatial.append((hash_r[:, :, None] * grid + hash_c[:, None, :]).reshape(b, -1))
            r = torch.arange(rows, device=x.device)
            c = torch.arange(cols, device=x.device)
            inside = (r[None, :, None] < ch[:, None, None]) & (c[None, None, :] < cw[:, None, None])
            masks.append(inside.reshape(b, -1))
            scale_ids.append(torch.full((rows * cols,), scale_id, device=x.device))
        return (
            torch.cat(patches, 1),
            torch.cat(spatial, 1),
            torch.cat(scale_ids),
            torch.cat(masks, 1),
        )

    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, 3, P, P) -> (B, N, D): ResNet stem, flattened H, W, C, then the Linear."""
        b, n = patches.shape[:2]
        y = patches.reshape(b * n, *patches.shape[2:])
        y = _max_pool_same(F.relu(self.gn_root(self.conv_root(y))))
        y = self.block1(y).permute(0, 2, 3, 1)  # official flatten order: H, W, C
        return self.embedding(y.reshape(b, n, -1))

    # ------------------------------------------------------------------ surface
    def forward_features(self, x: torch.Tensor, size: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled feature (B, D): the CLS token after the encoder's final LayerNorm.

        That is the tensor the official head reads, so ELTA's TFA mixes, and FLSA compares,
        the whole multi-scale representation just before the 10-bin head.
        """
        patches, spatial, scale_ids, mask = self.multiscale_input(x, size)
        tokens = self.encode_patches(patches)
        return self.transformer_encoder(tokens, spatial, scale_ids, mask)[:, 0]

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(z)

    def forward(self, x: torch.Tensor, size: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, size))


# --------------------------------------------------------------------------- weights

WEIGHT_PARTS = ("auto", "backbone")


def _read(path: Path) -> dict[str, np.ndarray | torch.Tensor]:
    """A checkpoint as a flat dict: the official JAX .npz (numpy, no pickles), else a torch file
    (baselines/weights.py)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            is_npz = any(name.endswith(".npy") for name in z.namelist())
        if is_npz:
            try:
                with np.load(path, allow_pickle=False) as data:
                    return {k: data[k] for k in data.files}
            except Exception as err:  # truncated, pickled arrays...
                raise UserError(f"{path}: cannot read this .npz ({type(err).__name__})") from None
    return read_state_dict(path)


def _jax_name(rel: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
    """One official JAX parameter (name below `opt/target/`) -> (our name, array), or None for
    names that are not ours (the head is handled by the caller)."""
    parts = rel.split("/")
    leaf = parts[-1]

    def norm(prefix: str) -> tuple[str, np.ndarray]:
        return f"{prefix}.{'weight' if leaf == 'scale' else 'bias'}", value

    if parts[0] in ("conv_root", "gn_root", "embedding", "head"):
        if parts[0] == "conv_root":
            return "conv_root.weight", value.transpose(3, 2, 0, 1)
        if parts[0] == "gn_root":
            return norm("gn_root")
        return f"{parts[0]}.{'weight' if leaf == 'kernel' else 'bias'}", (
            value.T if leaf == "kernel" else value
        )
    if parts[:2] == ["block1", "unit1"] and len(parts) == 4:
        layer = parts[2]
        if layer.startswith("conv"):
            return f"block1.{layer}.weight", value.transpose(3, 2, 0, 1)
        return norm(f"block1.{layer}")
    if parts[0] != "Transformer":
        return None
    te = "transformer_encoder"
    if rel == "Transformer/posembed_input/pos_embedding":
        return f"{te}.posembed_input.position_emb", value
    if rel == "Transformer/scaleembed_input/scale_embedding":
        return f"{te}.scaleembed_input.scale_emb", value.reshape(value.shape[-2:])
    if rel == "Transformer/cls":
        return f"{te}.cls", value
    if parts[1] == "encoder_norm":
        return norm(f"{te}.encoder_norm")
    if not parts[1].startswith("encoderblock_") or len(parts) < 4:
        return None
    block = f"{te}.transformer.{parts[1]}"
    sub = parts[2]
    if sub in ("LayerNorm_0", "LayerNorm_1"):
        return norm(f"{block}.norm{1 + int(sub[-1])}")
    if sub == "SelfAttention_0" and len(parts) == 5:
        proj = parts[3]
        name = f"{block}.attention.{proj}.{'weight' if leaf == 'kernel' else 'bias'}"
        if proj in ("query", "key", "value"):
            if leaf == "kernel":  # (D, heads, head_dim) -> (heads*head_dim, D)
                return name, value.reshape(value.shape[0], -1).T
            return name, value.reshape(-1)
        if proj == "out":
            if leaf == "kernel":  # (heads, head_dim, D) -> (D, heads*head_dim)
                return name, value.reshape(-1, value.shape[-1]).T
            return name, value
    if sub == "MlpBlock_0" and len(parts) == 5 and parts[3] in ("Dense_0", "Dense_1"):
        fc = "fc1" if parts[3] == "Dense_0" else "fc2"
        if leaf == "kernel":
            return f"{block}.mlp.{fc}.weight", value.T
        return f"{block}.mlp.{fc}.bias", value
    return None


def _from_jax(flat: dict[str, np.ndarray], path: Path) -> tuple[dict, dict]:
    """Official `.npz` -> (backbone state, head state) in our names, with numpy only."""
    roots = [k for k in flat if k == "conv_root/kernel" or k.endswith("/conv_root/kernel")]
    if not roots:
        raise UserError(f"{path}: no 'conv_root/kernel' entry: not a MUSIQ .npz checkpoint")
    root = min(roots, key=lambda k: ("target" not in k, len(k)))  # opt/target/, not opt/state/
    prefix = root[: -len("conv_root/kernel")]
    body, head, unknown = {}, {}, []
    for key, value in flat.items():
        if not key.startswith(prefix):
            continue  # optimizer state and other trees
        rel = key[len(prefix) :]
        if rel.startswith("pre_logits/"):
            head["pre_logits"] = value  # a representation layer: its head is not ours
            continue
        mapped = _jax_name(rel, np.asarray(value))
        if mapped is None:
            unknown.append(rel)
        elif mapped[0].startswith("head."):
            head[mapped[0]] = mapped[1]
        else:
            body[mapped[0]] = mapped[1]
    if unknown:
        raise UserError(f"{path}: unexpected MUSIQ .npz entries, e.g. {unknown[:3]}")
    return body, head


def _from_pyiqa(state: dict, path: Path) -> tuple[dict, dict]:
    """pyiqa's `.pth` -> (backbone state, head state). Its encoder names are ours."""
    head = {}
    if any(k.startswith("imagenet_head.") for k in state):  # ImageNet pre-training file
        body = {k: v for k, v in state.items() if not k.startswith(("imagenet_head.", "head."))}
        return body, head
    for key in list(state):
        if key.startswith("head."):
            value = state.pop(key)
            head["head." + key.split(".")[-1]] = value  # head.0.weight (AVA) or head.weight
    return state, head


def load_weights(model: MUSIQ, part: str, path: Path) -> None:
    """Load a MUSIQ checkpoint (layout recognised by its keys) into `model`. Part 'backbone'
    never loads the head; a head is loaded only if it has 10 outputs."""
    flat = _read(path)
    if any("conv_root/kernel" in k for k in flat):
        body, head = _from_jax({k: np.asarray(v) for k, v in flat.items()}, path)
    elif "transformer_encoder.cls" in flat and "conv_root.weight" in flat:
        body, head = _from_pyiqa(dict(flat), path)
    else:
        sample = ", ".join(list(flat)[:3])
        raise UserError(
            f"{path}: not a MUSIQ checkpoint (pyiqa .pth or official .npz); keys start {sample}"
        )
    take_head = (
        part == "auto"
        and "pre_logits" not in head
        and tuple(np.shape(head.get("head.weight", ()))) == tuple(model.head.weight.shape)
    )
    if take_head:
        body.update({k: head[k] for k in ("head.weight", "head.bias")})
    state = {
        key: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
        for key, v in body.items()
    }
    what = "a MUSIQ checkpoint for this config"
    load_checked(model, state, path, what, lambda key: not key.startswith("head."))


def build(weights: dict[str, Path] | None = None, **config) -> MUSIQ:
    """The registry's entry point (configs in models.toml)."""
    model = MUSIQ(**config)
    for part, path in (weights or {}).items():
        load_weights(model, part, path)
    return model
