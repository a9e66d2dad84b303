"""EAT: an Enhancer for Aesthetics-oriented Transformers (He et al., ACM MM 2023).

EAT is DAT, the Deformable Attention Transformer (Xia et al., CVPR 2022; LeapLabTHU/DAT@566a593
`models/dat.py`, `models/dat_blocks.py`), with two changes to its deformable attention
(woshidandan/Image-Aesthetics-and-Quality-Assessment: `AVA/models/dat_blocks.py`
`DAttentionBaseline`; the rest of `dat.py` / `dat_blocks.py` is DAT's, line for line):

1. Learned interest points. DAT samples keys and values at a fixed uniform grid of reference
   points plus learned offsets. EAT replaces the grid by a learned map: `ref_point14`, a 1x1
   convolution C -> 2 on the block input (the layer-normed tokens), squashed by tanh into the
   [-1, 1] coordinates of `grid_sample`: one (y, x) interest point per pixel of the map.
2. Offset gating. An offset (tanh-bounded to +-factor/H, +-factor/W, as in DAT) is kept where it
   points away from the centre along both axes, i.e. where offset_y * ref_y > 0 and
   offset_x * ref_x > 0, and scaled by 0.25 otherwise (a product of exactly 0 counts as "not
   > 0"). The sampling position is pos = gated offset + interest point. `gate_offsets` below.

The architecture at `paper` is DAT-B as `AVA/configs/dat_base.yaml` (also DAT's own
`configs/dat_base.yaml`): stem Conv 4x4 stride 4 (3 -> 128) + LayerNorm; four stages of dims
128/256/512/1024, depths 2/2/18/2, heads 4/8/16/32, window 7; stages 1-2 alternate local window
attention (L) and shifted window attention (S, shift ceil(7/2) = 4, masked with -100 as the
code); stages 3-4 alternate L and the deformable attention (D) with 4 and 8 offset groups,
offset range factor 2 and depthwise offset convolutions of kernel 5 and 3 (DAT's `[9, 7, 5,
3][stage]`), and a learned relative-position table sampled at the query-to-key displacement
(`use_pes`: stages 3-4). Between stages a 2x2 stride-2 convolution (no bias) + LayerNorm. MLP
ratio 4, GELU, stochastic depth linearly up to 0.5. Every number is data in `models.toml`.

What the official code does and what we do:
- Interest points are averaged over the batch in the official code
  (`torch.mean(ref_point14(x), dim=0)` before the tanh): every sample of a batch samples at the
  same points, so a sample's score depends on the other images of its batch and on the batch
  size, in evaluation too. The method is per image (the official README: the model learns
  "where to locate interest points" in a photo; DAT's grid, which they replace, is shared only
  because it is fixed), and nothing in it needs other images: the batch mean looks like a bug.
  The `paper` config keeps it (`interest_points = "batch_mean"`, with the official batches of
  16, in training and evaluation), so that the released weights score as the authors ran them;
  `interest_points = "per_sample"` (the `per_sample` variant, and the `cpu` and `smoke`
  configs) gives each sample its own interest points (the official computation at batch size
  1), so that eval outputs are batch-independent.
- The official gate goes through numpy on detached tensors (a host sync per block). The gate is
  a step function of the offsets and interest points, so its gradient is zero wherever it is
  defined: computing it in torch on detached values (vectorised, on the input's device) gives
  the same values and the same gradients (through offset * gate and through pos = ... +
  interest point), without the sync.
- The interest points live on the H x W map of the block, so the offset convolution must keep
  that size: EAT needs DAT's offset stride 1 (the config's `strides: [-1, -1, 1, 1]`). DAT
  options that DAT-B leaves off (`dwc_pes`, `fixed_pes`, `no_offs`, `use_dwc_mlps`,
  `use_conv_patches`, `sr_ratios`, dropout rates of 0) are not implemented.
- Initialisation: the official `reset_parameters` loops over parameters, not modules, so it
  never fires; the effective init is PyTorch's default for every Linear/Conv and LayerNorm,
  truncated normal (std 0.01) for the relative-position tables. We use that same init.
- Head (config key `head`, the model's `output`: bench/train/losses.py). The official head is
  cls_norm (LayerNorm) -> global average pool -> cls_head, a Linear with no softmax
  (`AVA/models/dat.py`). On AVA (10 outputs) its raw outputs ARE the distribution: the
  batch-RMS EMD is taken on them (`AVA/util.py: EDMLoss`) and the score is sum_k k * out_k
  (`AVA/main_nni.py: get_score`), neither normalised nor clipped: head "distribution" (the
  default at `paper`), which the harness reads the same way. On TAD66K one output trained by
  MSE on score / 10 (`TAD66K/configs/dat_base.yaml` num_classes 1): head "score",
  Linear(1024, 1) raw (the paper config's `datasets.tad66k`). Head "logits": the same
  Linear(1024, 10) read as logits (the harness takes their softmax), the `dist_head` variant
  at paper, the head of the `cpu` and `smoke` configs and the default when a config names none.
  Every head is one Linear created at the same point, so a seed gives the same weights up to
  the head.

Pooled feature (`forward_features`): the 1024-d vector after `cls_norm` and global average
pooling, the input of `cls_head`. ELTA's code mixes (TFA) and aligns (FLSA) the average-pooled
backbone feature right before its head; in EAT that is this vector, the only one that feeds the
head (one linear layer), and the last place where an image is one vector.

Weights (`weights` maps a part to a local file; read by baselines/weights.py, which runs no
code: DAT's training checkpoints, which pickle a yacs config beside `model`, are refused, so
save their `model` entry alone):
- `backbone`: DAT-B ImageNet `dat_base_in1k_224.pth` (`ckpt['model']`, DAT's key names) or an
  EAT trained state dict: everything but `cls_head`. DAT has no `ref_point14`: left at its
  random init, as the official `load_state_dict(..., strict=False)` does.
- `auto`: recognised by its keys. DAT ImageNet (no `ref_point14`, 1000-way `cls_head`): as
  `backbone`. An EAT trained state dict (DAT-B keys + `ref_point14` per D block) loads whole
  when its `cls_head` fits the head: EAT's released AVA file
  (`AVA_AOT_vacc_0.8259_srcc_0.7596_vlcc_0.7710.pth`, 1024 -> 10) into head "distribution"
  as it is (into head "logits" it loads too, with a warning: its outputs are not logits), the
  released TAD66K file (`TAD66K_AOT_...`, 1024 -> 1) into head "score". A head that does not
  fit is a UserError; the file's backbone loads with part `backbone`.
Buffers that the official modules save (`relative_position_index`, `attn_mask`) are derived
from the config and recomputed here; file keys with those names are ignored.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import nn

from baselines.weights import load_checked, read_state_dict
from iaa_common import NUM_BINS, UserError

GATE_DAMP = 0.25  # EAT's factor for offsets that do not point away from the centre
DERIVED_BUFFERS = ("relative_position_index", "attn_mask")
HEAD_OUTPUTS = {"logits": NUM_BINS, "distribution": NUM_BINS, "score": 1}  # head -> outputs


def gate_offsets(offset: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """EAT's offset gating: offsets (..., 2) kept where offset * reference > 0 in both
    coordinates, else multiplied by 0.25. The gate is computed from detached values (its
    gradient is zero anyway); gradients flow through offset * gate."""
    with torch.no_grad():
        away = (offset * reference > 0).all(dim=-1, keepdim=True)
        gate = torch.where(away, 1.0, GATE_DAMP).to(offset.dtype)
    return offset * gate


def _query_grid(h: int, w: int, device, dtype) -> torch.Tensor:
    """DAT's uniform reference grid: pixel centres in [-1, 1], (h, w, 2) as (y, x)."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w * 2 - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1)


class LayerNormProxy(nn.Module):
    """LayerNorm over channels, under the attribute name the official checkpoints use
    (`*.norm.weight`). Works on channels-last tensors (the layout used inside)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class TransformerMLP(nn.Module):
    def __init__(self, dim: int, expansion: int):
        super().__init__()
        self.chunk = nn.Sequential(
            OrderedDict(
                linear1=nn.Linear(dim, dim * expansion),
                act=nn.GELU(),
                linear2=nn.Linear(dim * expansion, dim),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.chunk(x)


class LocalAttention(nn.Module):
    """Window attention with a relative-position bias table (Swin's), on non-overlapping
    windows; with `shift > 0`, DAT's ShiftWindowAttention (cyclic shift, -100 mask)."""

    def __init__(self, dim: int, heads: int, window: int, fmap: int, shift: int = 0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        if fmap % window:
            raise ValueError(f"a {fmap}x{fmap} map is not divisible into {window}x{window} windows")
        self.heads, self.window, self.shift = heads, window, shift
        self.proj_qkv = nn.Linear(dim, 3 * dim)
        self.proj_out = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        trunc_normal_(self.relative_position_bias_table, std=0.01)

        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ).flatten(1)  # (2, N)
        rel = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, N, N), >= 0
        index = rel[0] * (2 * window - 1) + rel[1]
        self.register_buffer("relative_position_index", index, persistent=False)

        if shift:
            if not 0 < shift < window:
                raise ValueError(f"shift {shift} must be in (0, window {window})")
            # region id per pixel after the cyclic shift: Swin's three slices per axis
            pos = torch.arange(fmap)
            region = (pos >= fmap - window).long() + (pos >= fmap - shift).long()
            ids = region[:, None] * 3 + region[None, :]  # (fmap, fmap)
            n = fmap // window
            ids = ids.view(n, window, n, window).permute(0, 2, 1, 3).reshape(n * n, -1)
            mask = (ids[:, :, None] != ids[:, None, :]).float() * -100.0  # (nW, N, N)
            self.register_buffer("attn_mask", mask, persistent=False)
        else:
            self.attn_mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, h, w, c = x.shape
        ws, heads = self.window, self.heads
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        r1, r2 = h // ws, w // ws
        windows = x.reshape(batch, r1, ws, r2, ws, c).permute(0, 1, 3, 2, 4, 5)
        windows = windows.reshape(batch, r1 * r2, ws * ws, c)
        n_win, n_tok = r1 * r2, ws * ws
        qkv = self.proj_qkv(windows).view(batch, n_win, n_tok, 3, heads, c // heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # (B, nW, heads, N, hd) each

        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n_tok, n_tok, heads).permute(2, 0, 1)  # (heads, N, N)
        if self.attn_mask is not None:
            bias = bias[None] + self.attn_mask[:, None]  # (nW, heads, N, N)
        else:
            bias = bias[None].expand(n_win, -1, -1, -1)
        shape = (batch, n_win * heads, n_tok, c // heads)
        out = F.scaled_dot_product_attention(
            q.reshape(shape), k.reshape(shape), v.reshape(shape),
            attn_mask=bias.reshape(1, n_win * heads, n_tok, n_tok),
        )  # fmt: skip
        out = out.view(batch, r1, r2, heads, ws, ws, c // heads).permute(0, 1, 4, 2, 5, 3, 6)
        out = self.proj_out(out.reshape(batch, h, w, c))
        if self.shift:
            out = torch.roll(out, shifts=(self.shift, self.shift), dims=(1, 2))
        return out


class DAttentionBaseline(nn.Module):
    """DAT's deformable attention with EAT's interest points and offset gating (module
    docstring). Key names as the official class."""

    def __init__(
        self,
        dim: int,
        heads: int,
        groups: int,
        fmap: int,
        offset_kernel: int,
        offset_range_factor: float,
        use_pe: bool,
        interest_points: str = "per_sample",
    ):
        super().__init__()
        if dim % heads or dim % groups or heads % groups:
            raise ValueError(f"dim {dim}, heads {heads} and groups {groups} do not divide")
        if interest_points not in ("per_sample", "batch_mean"):
            raise ValueError(
                f"interest_points must be per_sample or batch_mean, not {interest_points}"
            )
        self.heads, self.groups, self.fmap = heads, groups, fmap
        self.offset_range_factor = offset_range_factor
        self.interest_points = interest_points
        group_ch = dim // groups
        self.conv_offset = nn.Sequential(
            nn.Conv2d(group_ch, group_ch, offset_kernel, 1, offset_kernel // 2, groups=group_ch),
            LayerNormProxy(group_ch),
            nn.GELU(),
            nn.Conv2d(group_ch, 2, 1, 1, 0, bias=False),
        )
        self.proj_q = nn.Conv2d(dim, dim, 1)
        self.proj_k = nn.Conv2d(dim, dim, 1)
        self.proj_v = nn.Conv2d(dim, dim, 1)
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.ref_point14 = nn.Conv2d(dim, 2, 1)
        if use_pe:
            self.rpe_table = nn.Parameter(torch.zeros(heads, 2 * fmap - 1, 2 * fmap - 1))
            trunc_normal_(self.rpe_table, std=0.01)
        else:
            self.rpe_table = None

    @staticmethod
    def _pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        """A 1x1 convolution applied to channels-last tokens."""
        return F.linear(x, conv.weight.flatten(1), conv.bias)

    def interest(self, x: torch.Tensor) -> torch.Tensor:
        """EAT's interest points (B, H, W, 2) as (y, x) in [-1, 1]."""
        ref = self._pointwise(self.ref_point14, x)
        if self.interest_points == "batch_mean":  # the official, batch-coupled computation
            ref = ref.mean(0, keepdim=True).expand_as(ref)
        return ref.tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, h, w, c = x.shape
        g, heads = self.groups, self.heads
        gc, hc = c // g, c // heads
        q = self._pointwise(self.proj_q, x)  # (B, H, W, C)

        off = self.conv_offset[0](q.permute(0, 3, 1, 2).reshape(batch * g, gc, h, w).contiguous())
        off = self.conv_offset[2](self.conv_offset[1](off.permute(0, 2, 3, 1)))
        off = F.linear(off, self.conv_offset[3].weight.flatten(1))  # (B*g, H, W, 2) as (y, x)
        if self.offset_range_factor > 0:
            scale = off.new_tensor([1.0 / h, 1.0 / w]) * self.offset_range_factor
            off = off.tanh() * scale

        ref = self.interest(x)  # (B, H, W, 2)
        ref = ref.unsqueeze(1).expand(batch, g, h, w, 2).reshape(batch * g, h, w, 2)
        pos = gate_offsets(off, ref) + ref
        if self.offset_range_factor < 0:
            pos = pos.tanh()

        grid = pos.flip(-1)  # grid_sample wants (x, y)
        sampled = F.grid_sample(
            x.permute(0, 3, 1, 2).reshape(batch * g, gc, h, w), grid,
            mode="bilinear", align_corners=True,
        )  # fmt: skip
        sampled = sampled.reshape(batch, c, h * w).transpose(1, 2)  # (B, n, C)
        k = self._pointwise(self.proj_k, sampled).view(batch, -1, heads, hc).transpose(1, 2)
        v = self._pointwise(self.proj_v, sampled).view(batch, -1, heads, hc).transpose(1, 2)
        q = q.view(batch, h * w, heads, hc).transpose(1, 2)  # (B, heads, HW, hc)

        bias = None
        if self.rpe_table is not None:
            table = self.rpe_table[None].expand(batch, -1, -1, -1)
            table = table.reshape(batch * g, heads // g, 2 * h - 1, 2 * w - 1)
            queries = _query_grid(h, w, x.device, x.dtype).reshape(1, h * w, 1, 2)
            displacement = (queries - pos.reshape(batch * g, 1, h * w, 2)) * 0.5
            bias = F.grid_sample(
                table, displacement.flip(-1), mode="bilinear", align_corners=True
            )  # (B*g, heads/g, HW, n)
            bias = bias.reshape(batch, heads, h * w, h * w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, heads, HW, hc)
        out = out.transpose(1, 2).reshape(batch, h, w, c)
        return self._pointwise(self.proj_out, out)


class TransformerStage(nn.Module):
    def __init__(
        self,
        dim: int,
        depth: int,
        spec: Sequence[str],
        heads: int,
        window: int,
        groups: int,
        fmap: int,
        offset_kernel: int,
        offset_range_factor: float,
        use_pe: bool,
        expansion: int,
        drop_path: Sequence[float],
        interest_points: str,
    ):
        super().__init__()
        if len(spec) != depth:
            raise ValueError(f"stage spec {''.join(spec)} does not have {depth} blocks")
        self.layer_norms = nn.ModuleList(LayerNormProxy(dim) for _ in range(2 * depth))
        self.mlps = nn.ModuleList(TransformerMLP(dim, expansion) for _ in range(depth))
        self.attns = nn.ModuleList()
        for kind in spec:
            if kind == "L":
                attn = LocalAttention(dim, heads, window, fmap)
            elif kind == "S":
                attn = LocalAttention(dim, heads, window, fmap, shift=math.ceil(window / 2))
            elif kind == "D":
                attn = DAttentionBaseline(
                    dim, heads, groups, fmap, offset_kernel, offset_range_factor, use_pe,
                    interest_points,
                )  # fmt: skip
            else:
                raise ValueError(f"unknown block kind {kind!r} (L, S or D)")
            self.attns.append(attn)
        self.drop_path = nn.ModuleList(DropPath(p) if p > 0 else nn.Identity() for p in drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = zip(self.attns, self.mlps, self.drop_path, strict=True)
        for d, (attn, mlp, drop) in enumerate(blocks):
            x = x + drop(attn(self.layer_norms[2 * d](x)))
            x = x + drop(mlp(self.layer_norms[2 * d + 1](x)))
        return x


class EAT(nn.Module):
    """DAT with EAT's deformable attention, under the official module names (so that the
    official state dicts load by name). Tensors are channels-last (B, H, W, C) inside."""

    needs: tuple[str, ...] = ()

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        dims: Sequence[int],
        depths: Sequence[int],
        heads: Sequence[int],
        window_sizes: Sequence[int],
        stage_spec: Sequence[Sequence[str]],
        groups: Sequence[int],
        use_pes: Sequence[bool],
        offset_range_factor: Sequence[float],
        offset_kernel_sizes: Sequence[int],
        expansion: int = 4,
        drop_path_rate: float = 0.0,
        interest_points: str = "per_sample",
        head: str = "logits",
    ):
        super().__init__()
        if head not in HEAD_OUTPUTS:
            raise ValueError(f"EAT head must be one of {', '.join(HEAD_OUTPUTS)}, not {head!r}")
        if img_size % (patch_size * 8):
            raise ValueError(f"img_size {img_size} must be divisible by 8 * patch {patch_size}")
        self.img_size = img_size
        self.output = head
        self.patch_proj = nn.Sequential(
            nn.Conv2d(3, dims[0], patch_size, patch_size), LayerNormProxy(dims[0])
        )
        n_blocks = sum(depths)
        rates = [drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)]  # linspace
        fmap = img_size // patch_size
        self.stages = nn.ModuleList()
        for i in range(4):
            start = sum(depths[:i])
            self.stages.append(
                TransformerStage(
                    dim=dims[i],
                    depth=depths[i],
                    spec=list(stage_spec[i]),
                    heads=heads[i],
                    window=window_sizes[i],
                    groups=groups[i],
                    fmap=fmap,
                    offset_kernel=offset_kernel_sizes[i],
                    offset_range_factor=offset_range_factor[i],
                    use_pe=bool(use_pes[i]),
                    expansion=expansion,
                    drop_path=rates[start : start + depths[i]],
                    interest_points=interest_points,
                )
            )
            fmap //= 2
        self.down_projs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(dims[i], dims[i + 1], 2, 2, bias=False), LayerNormProxy(dims[i + 1])
            )
            for i in range(3)
        )
        self.cls_norm = LayerNormProxy(dims[-1])
        self.cls_head = nn.Linear(dims[-1], HEAD_OUTPUTS[head])
        self.feature_dim = dims[-1]

    @staticmethod
    def _conv_norm(block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """Conv (channels-first in) then LayerNorm, out channels-last."""
        return block[1](block[0](x.contiguous()).permute(0, 2, 3, 1))  # NCHW: see loading.py

    def forward_features(self, x: torch.Tensor, **extras) -> torch.Tensor:
        """The pooled feature (B, 1024 at paper): the tokens after `cls_norm`, averaged over
        the map, i.e. the input of `cls_head`. ELTA's TFA/FLSA (and FDS, RankSim) act here: it
        is the only vector that feeds the head, like the pooled Swin feature in ELTA's code."""
        x = self._conv_norm(self.patch_proj, x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < 3:
                x = self._conv_norm(self.down_projs[i], x.permute(0, 3, 1, 2))
        return self.cls_norm(x).mean(dim=(1, 2))

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        """`cls_head`'s raw outputs: (B, 10) logits or distribution, or (B, 1) score / 10, as
        the head (`output`) says."""
        return self.cls_head(z)

    def forward(self, x: torch.Tensor, **extras) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, **extras))


# ---- weights --------------------------------------------------------------------------------


WEIGHT_PARTS = ("auto", "backbone")


def official_to_model(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A file's state dict -> ours: the official names are ours; the buffers derived from the
    config (`relative_position_index`, `attn_mask`) are recomputed here, so dropped."""
    return {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in DERIVED_BUFFERS}


def load_weights(model: EAT, part: str, path: Path) -> str:
    """Load one weights file into `model` (see the module docstring for the parts and
    layouts). Returns the layout it recognised. Every mismatch is a one-line UserError."""
    sd = official_to_model(read_state_dict(path))
    if "patch_proj.0.weight" not in sd or not any(k.startswith("stages.") for k in sd):
        raise UserError(
            f"{path}: not a DAT/EAT state dict (no 'patch_proj.0.weight' / 'stages.*' keys)"
        )
    has_interest = any(".ref_point14." in k for k in sd)
    if part == "backbone":
        layout = "EAT backbone" if has_interest else "DAT ImageNet backbone"
    else:
        layout = "EAT trained" if has_interest else "DAT ImageNet"
    keep_head = layout == "EAT trained"
    if keep_head and "cls_head.weight" in sd:
        n_out, n_head = sd["cls_head.weight"].shape[0], model.cls_head.out_features
        if n_out != n_head:
            raise UserError(
                f"{path}: its cls_head has {n_out} outputs, head '{model.output}' has {n_head} "
                "(EAT's released AVA file: 10, head 'distribution'; its TAD66K file: 1, head "
                "'score'); its backbone loads with --weights eat.backbone=FILE"
            )
    if not keep_head:
        sd = {k: v for k, v in sd.items() if not k.startswith("cls_head.")}

    def required(key: str) -> bool:  # DAT has no interest points: they stay at init
        if key.startswith("cls_head.") and not keep_head:
            return False
        return has_interest or ".ref_point14." not in key

    load_checked(model, sd, path, "a DAT/EAT checkpoint for this config", required)
    if keep_head and model.output == "logits":
        warnings.warn(
            f"{path}: a trained EAT head loaded into head 'logits' (its softmax is taken); "
            "EAT's released AVA head emits the distribution itself (head 'distribution')",
            stacklevel=2,
        )
    return layout


def build(weights: dict[str, Path] | None = None, **config) -> EAT:
    """The registry's entry point (configs in models.toml)."""
    model = EAT(**config)
    for part, path in (weights or {}).items():
        load_weights(model, part, path)
    return model
