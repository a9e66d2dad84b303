"""An independent reference of the OFFICIAL EAT AVA evaluation (He et al., ACM MM 2023), written
from a reading of woshidandan/Image-Aesthetics-and-Quality-Assessment, AVA/ (models/dat.py: DAT,
TransformerStage; models/dat_blocks.py: LocalAttention, ShiftWindowAttention,
DAttentionBaseline, TransformerMLP, LayerNormProxy; configs/dat_base.yaml; main_nni.py:
get_score, validate; dataset.py; option.py: batch_size 16). Own code, plain torch ops,
channels-first like the official modules, no nn.Module: it reads a state dict in the released
key layout (DAT-B keys + `ref_point14` per deformable block, cls_head 1024 -> 10) and computes
what the official `model(x)[0]` is in `model.eval()`.

What the official eval computes, per test batch (DataLoader over test.csv, batch 16, in order,
the last partial batch kept, under torch.no_grad):
  patch_proj Conv(4x4, stride 4) + LayerNorm over channels; four stages of pre-norm blocks
  x = x + attn(LN(x)); x = x + MLP(LN(x)) (Linear-GELU-Linear, ratio 4); between stages
  Conv(2x2, stride 2, no bias) + LN; cls_norm LN -> global mean -> cls_head Linear. The head
  output is used RAW (no softmax): y_pred = model(x)[0]; get_score = sum_k k * y_pred_k.
  L  window attention (7x7 windows, Swin relative-position bias), S the same on a map rolled by
     -ceil(w/2) with the -100 mask of Swin, rolled back.
  D  EAT's deformable attention, per block:
     q = proj_q(x); per offset group: offset = Conv1x1(GELU(LN(DWConv_k(q_g)))) (2 channels,
     (y, x)), then tanh * (factor / H, factor / W) when factor > 0;
     interest points ref = tanh(mean over the BATCH of ref_point14(x)) (1, H, W, 2), the same
     for every image of the batch and every group;
     gate: the offset is kept where offset_y * ref_y > 0 and offset_x * ref_x > 0, else * 0.25;
     pos = offset + ref (tanh of it when factor < 0); keys / values = proj_k / proj_v of
     grid_sample(x_g, pos as (x, y), bilinear, align_corners=True, zero padding), one sample
     per map pixel; attention logits q.k * hc^-0.5 + bias, the bias sampled bilinearly
     (align_corners=True) from rpe_table (heads, 2H-1, 2W-1) at (query grid - pos) / 2, the
     query grid being pixel centres (i + 0.5) / H * 2 - 1; softmax over the samples; proj_out.
The architecture is read from the state dict (dims, depths, heads, windows, groups, kernels,
use_pe, patch size); the two things it does not hold are arguments: the block kinds per stage
(`stage_spec`, L / S / D; DAT-B's by default) and `offset_range_factor` (DAT-B: -1, -1, 2, 2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LN_EPS = 1e-5
OFFICIAL_TEST_BATCH = 16  # AVA/option.py --batch_size
DAT_B_STAGE_SPEC = ("LS", "LS", "LD" * 9, "LD")  # AVA/configs/dat_base.yaml
DAT_B_OFFSET_RANGE = (-1, -1, 2, 2)
GATE_DAMP = 0.25


def _ln(sd: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the channel axis (dim 1) of (B, C, ...)."""
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    w, b = sd[f"{name}.norm.weight"].view(shape), sd[f"{name}.norm.bias"].view(shape)
    return (x - mean) / torch.sqrt(var + LN_EPS) * w + b


def _pointwise(sd: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution (or a Linear) over the channel axis of (B, C, H, W)."""
    w = sd[f"{name}.weight"].flatten(1)
    y = torch.einsum("oc,bchw->bohw", w, x)
    bias = sd.get(f"{name}.bias")
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _softmax_last(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(x - x.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


# ---- window attention (L, S) --------------------------------------------------------------------


def _relative_index(w: int) -> torch.Tensor:
    """Swin's index into the (2w-1)^2 table for query token i and key token j of a window."""
    ys, xs = torch.div(torch.arange(w * w), w, rounding_mode="floor"), torch.arange(w * w) % w
    dy = ys[:, None] - ys[None, :] + (w - 1)
    dx = xs[:, None] - xs[None, :] + (w - 1)
    return dy * (2 * w - 1) + dx


def _shift_mask(fmap: int, w: int, s: int) -> torch.Tensor:
    """(nW, w*w, w*w): -100 between tokens of a window that came from different regions."""
    region = torch.zeros(fmap, dtype=torch.long)
    region[fmap - w :] = 1
    region[fmap - s :] = 2
    label = region[:, None] * 3 + region[None, :]  # (fmap, fmap)
    n = fmap // w
    win = label.view(n, w, n, w).permute(0, 2, 1, 3).reshape(n * n, w * w)
    return torch.where(win[:, :, None] == win[:, None, :], 0.0, -100.0)


def _window_attention(sd: dict, p: str, x: torch.Tensor, shifted: bool) -> torch.Tensor:
    B, C, H, W = x.shape
    table = sd[p + "relative_position_bias_table"]
    w = (math.isqrt(table.shape[0]) + 1) // 2
    heads, hd = table.shape[1], C // table.shape[1]
    s = math.ceil(w / 2)
    if shifted:
        x = torch.roll(x, (-s, -s), (2, 3))
    r1, r2 = H // w, W // w
    tok = x.view(B, C, r1, w, r2, w).permute(0, 2, 4, 3, 5, 1).reshape(B, r1 * r2, w * w, C)
    qkv = tok @ sd[p + "proj_qkv.weight"].T + sd[p + "proj_qkv.bias"]
    q, k, v = (t.reshape(B, r1 * r2, w * w, heads, hd).transpose(2, 3) for t in qkv.split(C, -1))
    logits = (q * hd**-0.5) @ k.transpose(-1, -2)  # (B, nW, heads, N, N)
    bias = table[_relative_index(w).flatten()].view(w * w, w * w, heads).permute(2, 0, 1)
    logits = logits + bias
    if shifted:
        logits = logits + _shift_mask(H, w, s).to(x)[None, :, None]
    out = (_softmax_last(logits) @ v).transpose(2, 3).reshape(B, r1 * r2, w * w, C)
    out = out @ sd[p + "proj_out.weight"].T + sd[p + "proj_out.bias"]
    out = out.view(B, r1, r2, w, w, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, H, W)
    return torch.roll(out, (s, s), (2, 3)) if shifted else out


# ---- EAT's deformable attention (D) ------------------------------------------------------------


def _deformable_attention(sd: dict, p: str, x: torch.Tensor, factor: float) -> torch.Tensor:
    B, C, H, W = x.shape
    dw = sd[p + "conv_offset.0.weight"]  # (C/g, 1, k, k)
    gc, k = dw.shape[0], dw.shape[-1]
    g = C // gc
    rpe = sd.get(p + "rpe_table")
    heads = rpe.shape[0] if rpe is not None else None
    if heads is None:
        raise NotImplementedError("DAT-B's deformable blocks all have rpe_table (use_pes)")
    hc = C // heads

    q = _pointwise(sd, p + "proj_q", x)  # (B, C, H, W)
    off = F.conv2d(
        q.reshape(B * g, gc, H, W), dw, sd[p + "conv_offset.0.bias"], padding=k // 2, groups=gc
    )
    off = _pointwise(
        sd, p + "conv_offset.3", _gelu(_ln(sd, p + "conv_offset.1", off))
    )  # (Bg, 2, H, W)
    if factor > 0:
        off = (
            off.tanh()
            * torch.tensor([1.0 / H, 1.0 / W], dtype=x.dtype, device=x.device).view(1, 2, 1, 1)
            * factor
        )
    off = off.permute(0, 2, 3, 1)  # (Bg, H, W, 2) as (y, x)

    ref = _pointwise(sd, p + "ref_point14", x).mean(0)  # batch mean (2, H, W)
    ref = ref.permute(1, 2, 0).tanh()[None]  # (1, H, W, 2)
    keep = ((off[..., 0] * ref[..., 0]) > 0) & ((off[..., 1] * ref[..., 1]) > 0)
    off = off * torch.where(keep, 1.0, GATE_DAMP).to(x.dtype)[..., None]
    pos = off + ref if factor >= 0 else (off + ref).tanh()  # (Bg, H, W, 2)

    sampled = F.grid_sample(
        x.reshape(B * g, gc, H, W),
        pos.flip(-1),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )  # (Bg, gc, H, W)
    sampled = sampled.reshape(B, C, H, W)
    kk = _pointwise(sd, p + "proj_k", sampled).reshape(B, heads, hc, H * W)
    vv = _pointwise(sd, p + "proj_v", sampled).reshape(B, heads, hc, H * W)
    qq = q.reshape(B, heads, hc, H * W)
    logits = torch.einsum("bhcm,bhcn->bhmn", qq, kk) * hc**-0.5  # (B, heads, HW, Ns)

    cy = (torch.arange(H, dtype=x.dtype, device=x.device) + 0.5) / H * 2 - 1
    cx = (torch.arange(W, dtype=x.dtype, device=x.device) + 0.5) / W * 2 - 1
    queries = torch.stack(torch.meshgrid(cy, cx, indexing="ij"), -1).reshape(1, H * W, 1, 2)
    disp = (queries - pos.reshape(B * g, 1, H * W, 2)) * 0.5  # (Bg, HW, Ns, 2)
    table = rpe[None].expand(B, -1, -1, -1).reshape(B * g, heads // g, 2 * H - 1, 2 * W - 1)
    bias = F.grid_sample(
        table, disp.flip(-1), mode="bilinear", padding_mode="zeros", align_corners=True
    )
    logits = logits + bias.reshape(B, heads, H * W, H * W)

    out = torch.einsum("bhmn,bhcn->bhcm", _softmax_last(logits), vv).reshape(B, C, H, W)
    return _pointwise(sd, p + "proj_out", out)


# ---- the model and the scoring ---------------------------------------------------------------


@torch.no_grad()
def official_eat_forward(
    state_dict: dict,
    images: torch.Tensor,
    stage_spec=DAT_B_STAGE_SPEC,
    offset_range_factor=DAT_B_OFFSET_RANGE,
) -> torch.Tensor:
    """The official `DAT(...)(images)[0]` in eval mode for ONE batch: (B, 10) raw cls_head
    outputs (no softmax). The interest points are averaged over this batch."""
    sd = {
        k.removeprefix("module."): v.to(images.device, images.dtype) if v.is_floating_point() else v
        for k, v in state_dict.items()
    }
    patch = sd["patch_proj.0.weight"].shape[-1]
    x = F.conv2d(images, sd["patch_proj.0.weight"], sd["patch_proj.0.bias"], stride=patch)
    x = _ln(sd, "patch_proj.1", x)
    for i in range(4):
        depth = sum(
            1
            for key in sd
            if key.startswith(f"stages.{i}.mlps.") and key.endswith("linear1.weight")
        )
        if len(stage_spec[i]) != depth:
            raise ValueError(
                f"stage {i}: the state dict has {depth} blocks, stage_spec says {stage_spec[i]}"
            )
        if f"stages.{i}.proj.weight" in sd:
            raise NotImplementedError(
                "a stage input projection (dim_in != dim_embed) is not in DAT-B"
            )
        for d, kind in enumerate(stage_spec[i]):
            s, a = f"stages.{i}.", f"stages.{i}.attns.{d}."
            y = _ln(sd, f"{s}layer_norms.{2 * d}", x)
            if kind in "LS":
                y = _window_attention(sd, a, y, shifted=kind == "S")
            else:
                y = _deformable_attention(sd, a, y, offset_range_factor[i])
            x = x + y
            y = _ln(sd, f"{s}layer_norms.{2 * d + 1}", x).permute(0, 2, 3, 1)
            m = f"{s}mlps.{d}.chunk."
            y = _gelu(y @ sd[m + "linear1.weight"].T + sd[m + "linear1.bias"])
            x = x + (y @ sd[m + "linear2.weight"].T + sd[m + "linear2.bias"]).permute(0, 3, 1, 2)
        if i < 3:
            x = _ln(sd, f"down_projs.{i}.1", F.conv2d(x, sd[f"down_projs.{i}.0.weight"], stride=2))
    pooled = _ln(sd, "cls_norm", x).mean((2, 3))
    return pooled @ sd["cls_head.weight"].T + sd["cls_head.bias"]


def official_score(outputs: torch.Tensor) -> torch.Tensor:
    """main_nni.get_score: sum_k k * out_k, k = 1..10, on the RAW outputs (no softmax, no
    division by their sum)."""
    k = torch.arange(1, outputs.shape[1] + 1, dtype=outputs.dtype, device=outputs.device)
    return (outputs * k).sum(1)


def official_eat_eval(
    state_dict: dict, images: torch.Tensor, batch_size: int = OFFICIAL_TEST_BATCH, **arch
):
    """The official validate() over `images` (all test images in test.csv order): consecutive
    batches of `batch_size`, the last one partial. Returns (raw outputs (N, 10), scores (N,))."""
    out = torch.cat(
        [official_eat_forward(state_dict, chunk, **arch) for chunk in images.split(batch_size)]
    )
    return out, official_score(out)
