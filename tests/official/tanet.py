"""An independent reference of the OFFICIAL TANet AVA evaluation (He et al., IJCAI 2022), written
from a reading of woshidandan/TANet-image-aesthetics-and-quality-assessment, code/AVA/
(train_nni.py: TANet, L1, TargetNet, TargetFC, L5, MobileNetV2, Attention, get_score, validate;
dataset.py: AVADataset; option.py: batch_size 48). Own code, plain torch ops, no nn.Module: it
reads a state dict in the released key layout (code/AVA/SRCC_758_LCC_765.pth: 459 keys) and
computes what the official model returns in `model.eval()`.

What the official eval computes, per test batch (DataLoader over test.csv, batch 48, in order,
the last partial batch kept):
  RGB     AdaptiveAvgPool2d((12, 12)) of the normalised image -> cosine similarity of the 144
          pooled colour vectors (norm product clamped at 1e-8) -> flatten (20736) -> ReLU ->
          Linear -> softmax                                                   (10)
  theme   t = res365_last(x): a torchvision ResNet-18 with 365 Places logits (BN in eval)
          W = hypernet.last_out_w(t) (B, 100), b = hypernet.last_out_b(t) (B, 1)
          h = PReLU_1(BN1_eval(tygertnet.fc1(t)))                            (B, 100)
          q = F.linear(h, W, b): q[i, j] = h_i . W_j + b_i                   (B, B)
          q = BatchNorm1d(B) built in forward -> always training mode: each column j normalised
              by its batch mean / biased variance, eps 1e-5, weight 1, bias 0
          q = PReLU_7(q); AdaptiveAvgPool2d((10, 1)) over the column axis     (B, 10)
  aesth.  MobileNetV2 features -> AvgPool2d(7) (= global mean at 224 px) -> ReLU -> Linear (10)
  fusion  cat[aesthetics, theme, RGB] (30) -> ReLU -> Linear(30, 10) -> softmax
The model output is that softmax; get_score turns it into sum_k k * p_k, k = 1..10. No second
softmax. Dropouts are off in eval; BatchNorm2d / tygertnet.bn1 use their running statistics.

`official_tanet_forward` works for any width the state dict has (theme classes, hidden size,
MobileNetV2 width / depth / last channels, RGB grid), so it also runs the harness's smoke and
cpu configs. The one structural fact not in the keys, MobileNetV2's stage strides, is the
official table (1, 2, 2, 2, 1, 2, 1), a new stage starting where the output width changes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-5
MBV2_STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)  # official MobileNetV2 setting, column s
OFFICIAL_TEST_BATCH = 48  # code/AVA/option.py --batch_size
THEME_BINS = 10  # AdaptiveAvgPool2d((10, 1))


# ---- the official test transform ----------------------------------------------------------------


def official_test_image(path) -> torch.Tensor:
    """code/AVA/dataset.py, if_train=False: default_loader (PIL, convert RGB), then
    `image.resize((224, 224))` (PIL's default filter: BICUBIC since Pillow 7), ToTensor,
    Normalize(ImageNet). Returns (3, 224, 224) float32."""
    from PIL import Image

    with Image.open(path) as im:
        image = im.convert("RGB")
    image = image.resize((224, 224), Image.Resampling.BICUBIC)
    a = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
    a = a.float().div(255)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (a - mean) / std


# ---- small pieces ------------------------------------------------------------------------------


def _bn_eval(sd: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm (1d or 2d) with running statistics, channel axis 1."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean = sd[f"{name}.running_mean"].view(shape)
    inv = torch.rsqrt(sd[f"{name}.running_var"].view(shape) + BN_EPS)
    return (x - mean) * inv * sd[f"{name}.weight"].view(shape) + sd[f"{name}.bias"].view(shape)


def _prelu(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, a * x)


def _linear(sd: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def _adaptive_bins(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows: [floor(i n / m), ceil((i + 1) n / m))."""
    return [((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]


def _adaptive_mean_last(x: torch.Tensor, n_out: int) -> torch.Tensor:
    """Adaptive average pooling of the last axis to `n_out` windows."""
    return torch.stack([x[..., a:b].mean(-1) for a, b in _adaptive_bins(x.shape[-1], n_out)], -1)


def _adaptive_mean_2d(x: torch.Tensor, n_out: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, n_out, n_out), windows as PyTorch's AdaptiveAvgPool2d."""
    rows = torch.stack(
        [x[:, :, a:b, :].mean(2) for a, b in _adaptive_bins(x.shape[2], n_out)], 2
    )  # (B, C, n_out, W)
    return _adaptive_mean_last(rows, n_out)


# ---- the three branches ------------------------------------------------------------------------


def _resnet(sd: dict, p: str, x: torch.Tensor) -> torch.Tensor:
    """torchvision ResNet of BasicBlocks (the Places365 ResNet-18) -> fc logits."""
    x = F.conv2d(x, sd[f"{p}conv1.weight"], stride=2, padding=3)
    x = F.max_pool2d(torch.relu(_bn_eval(sd, f"{p}bn1", x)), 3, 2, 1)
    for layer in range(1, 5):
        block = 0
        while f"{p}layer{layer}.{block}.conv1.weight" in sd:
            b = f"{p}layer{layer}.{block}."
            stride = 2 if layer > 1 and block == 0 else 1
            y = F.conv2d(x, sd[b + "conv1.weight"], stride=stride, padding=1)
            y = torch.relu(_bn_eval(sd, b + "bn1", y))
            y = _bn_eval(sd, b + "bn2", F.conv2d(y, sd[b + "conv2.weight"], padding=1))
            if b + "downsample.0.weight" in sd:
                x = _bn_eval(
                    sd,
                    b + "downsample.1",
                    F.conv2d(x, sd[b + "downsample.0.weight"], stride=stride),
                )
            x = torch.relu(y + x)
            block += 1
    return _linear(sd, f"{p}fc", x.mean((2, 3)))


def _mobilenet_v2(sd: dict, p: str, x: torch.Tensor) -> torch.Tensor:
    """Official MobileNetV2 `features` (stem conv_bn, InvertedResidual conv.0-7 even at t = 1,
    conv_1x1_bn) -> global average (AvgPool2d(7) at 224 px) -> (B, last)."""
    x = torch.relu(_bn_eval(sd, f"{p}0.1", F.conv2d(x, sd[f"{p}0.0.weight"], stride=2, padding=1)))
    i, stage, prev_out = 1, -1, None
    while f"{p}{i}.conv.0.weight" in sd:
        c = f"{p}{i}.conv."
        w_expand, w_dw, w_project = sd[c + "0.weight"], sd[c + "3.weight"], sd[c + "6.weight"]
        cin, cout = w_expand.shape[1], w_project.shape[0]
        first_of_stage = cout != prev_out
        stage += first_of_stage
        stride = MBV2_STAGE_STRIDES[stage] if first_of_stage else 1
        y = (_bn_eval(sd, c + "1", F.conv2d(x, w_expand))).clamp(0, 6)
        y = _bn_eval(sd, c + "4", F.conv2d(y, w_dw, stride=stride, padding=1, groups=w_dw.shape[0]))
        y = _bn_eval(sd, c + "7", F.conv2d(y.clamp(0, 6), w_project))
        x = x + y if stride == 1 and cin == cout else y
        prev_out, i = cout, i + 1
    x = torch.relu(_bn_eval(sd, f"{p}{i}.1", F.conv2d(x, sd[f"{p}{i}.0.weight"])))
    return x.mean((2, 3))


def _rgb_branch(sd: dict, x: torch.Tensor) -> torch.Tensor:
    grid = round(sd["head_rgb.2.weight"].shape[1] ** 0.25)
    v = _adaptive_mean_2d(x, grid).flatten(2)  # (B, 3, N) colour vectors of the N patches
    dots = v.transpose(1, 2) @ v  # (B, N, N)
    norms = v.pow(2).sum(1).sqrt()  # (B, N)
    sim = dots / (norms[:, :, None] * norms[:, None, :]).clamp(min=1e-8)
    return torch.softmax(_linear(sd, "head_rgb.2", torch.relu(sim.flatten(1))), 1)


def _theme_branch(sd: dict, x: torch.Tensor) -> torch.Tensor:
    t = _resnet(sd, "res365_last.", x)  # (B, classes) logits
    w = _linear(sd, "hypernet.last_out_w", t)  # (B, H): one target-layer weight row per image
    b = _linear(sd, "hypernet.last_out_b", t)  # (B, 1)
    h = _linear(sd, "tygertnet.fc1", t)
    h = _prelu(_bn_eval(sd, "tygertnet.bn1", h), sd["tygertnet.relu1.weight"])
    q = h @ w.T + b  # (B, B): row i = image i's features against every image's weights, + b_i
    mean = q.mean(0, keepdim=True)  # the unregistered BatchNorm1d(B), training mode
    var = (q - mean).pow(2).mean(0, keepdim=True)
    q = _prelu((q - mean) / torch.sqrt(var + BN_EPS), sd["tygertnet.relu7.weight"])
    return _adaptive_mean_last(q, THEME_BINS)  # the B columns -> 10


def _aesthetics_branch(sd: dict, x: torch.Tensor) -> torch.Tensor:
    feat = _mobilenet_v2(sd, "mobileNet.base_model.0.", x)
    return _linear(sd, "mobileNet.head.2", torch.relu(feat))


# ---- the model and the scoring ---------------------------------------------------------------


@torch.no_grad()
def official_tanet_forward(state_dict: dict, images: torch.Tensor) -> torch.Tensor:
    """What the official `TANet()(images)` returns in eval mode for ONE batch: (B, 10), the
    fusion head's softmax. `images` are normalised (B, 3, H, W) float; `state_dict` has the
    released key names (a leading `module.` is stripped). B = 1 raises, like the official
    BatchNorm1d(B) in training mode."""
    sd = {
        k.removeprefix("module."): v.to(images.device, images.dtype) if v.is_floating_point() else v
        for k, v in state_dict.items()
    }
    if images.shape[0] < 2:
        raise ValueError("the official theme branch (BatchNorm1d(B), training mode) needs B >= 2")
    fused = torch.cat(
        [_aesthetics_branch(sd, images), _theme_branch(sd, images), _rgb_branch(sd, images)], 1
    )
    return torch.softmax(_linear(sd, "head.2", torch.relu(fused)), 1)


def official_score(outputs: torch.Tensor) -> torch.Tensor:
    """get_score: sum_k k * out_k with k = 1..10 (np.linspace(1, 10, 10) as float32)."""
    k = torch.arange(1, outputs.shape[1] + 1, dtype=outputs.dtype, device=outputs.device)
    return (outputs * k).sum(1)


def official_tanet_eval(
    state_dict: dict, images: torch.Tensor, batch_size: int = OFFICIAL_TEST_BATCH
):
    """The official test loop over `images` (all test images, in test.csv order): consecutive
    batches of `batch_size` (the last one partial), each through the model. Returns
    (outputs (N, 10), scores (N,)). Per-image results depend on the batch partition."""
    outs = [official_tanet_forward(state_dict, chunk) for chunk in images.split(batch_size)]
    out = torch.cat(outs)
    return out, official_score(out)


def released_tanet_shapes(
    theme_classes=365,
    hidden=100,
    mbv2_width=1.0,
    mbv2_blocks=(1, 2, 3, 4, 3, 3, 1),
    mbv2_last=1280,
    rgb_grid=12,
    theme_widths=(64, 128, 256, 512),
    theme_blocks=(2, 2, 2, 2),
):
    """Key -> shape of a TANet state dict in the released layout (defaults: code/AVA, 459 keys);
    other arguments give the harness's small configs in the same layout (bn7 excluded)."""

    def bn(name, c):
        return {f"{name}.{s}": (c,) for s in ("weight", "bias", "running_mean", "running_var")} | {
            f"{name}.num_batches_tracked": ()
        }

    s, p = {}, "res365_last."
    s |= {p + "conv1.weight": (theme_widths[0], 3, 7, 7), **bn(p + "bn1", theme_widths[0])}
    cin = theme_widths[0]
    for layer, (width, n) in enumerate(zip(theme_widths, theme_blocks, strict=True), 1):
        for blk in range(n):
            b = f"{p}layer{layer}.{blk}."
            c0 = cin if blk == 0 else width
            s |= {
                b + "conv1.weight": (width, c0, 3, 3),
                **bn(b + "bn1", width),
                b + "conv2.weight": (width, width, 3, 3),
                **bn(b + "bn2", width),
            }
            if blk == 0 and (layer > 1 or c0 != width):
                s |= {b + "downsample.0.weight": (width, c0, 1, 1), **bn(b + "downsample.1", width)}
        cin = width
    s |= {p + "fc.weight": (theme_classes, cin), p + "fc.bias": (theme_classes,)}
    s |= {
        "hypernet.last_out_w.weight": (hidden, theme_classes),
        "hypernet.last_out_w.bias": (hidden,),
        "hypernet.last_out_b.weight": (1, theme_classes),
        "hypernet.last_out_b.bias": (1,),
        "tygertnet.fc1.weight": (hidden, theme_classes),
        "tygertnet.fc1.bias": (hidden,),
        **bn("tygertnet.bn1", hidden),
        "tygertnet.relu1.weight": (1,),
        "tygertnet.relu7.weight": (1,),
    }
    m = "mobileNet.base_model.0."
    cin = int(32 * mbv2_width)
    s |= {m + "0.0.weight": (cin, 3, 3, 3), **bn(m + "0.1", cin)}
    i = 1
    for (t, c), n in zip(
        ((1, 16), (6, 24), (6, 32), (6, 64), (6, 96), (6, 160), (6, 320)), mbv2_blocks, strict=True
    ):
        for _ in range(n):
            cout, mid, q = int(c * mbv2_width), cin * t, f"{m}{i}.conv."
            s |= {
                q + "0.weight": (mid, cin, 1, 1),
                **bn(q + "1", mid),
                q + "3.weight": (mid, 1, 3, 3),
                **bn(q + "4", mid),
                q + "6.weight": (cout, mid, 1, 1),
                **bn(q + "7", cout),
            }
            cin, i = cout, i + 1
    s |= {f"{m}{i}.0.weight": (mbv2_last, cin, 1, 1), **bn(f"{m}{i}.1", mbv2_last)}
    s |= {
        "mobileNet.head.2.weight": (10, mbv2_last),
        "mobileNet.head.2.bias": (10,),
        "head_rgb.2.weight": (10, rgb_grid**4),
        "head_rgb.2.bias": (10,),
        "head.2.weight": (10, 30),
        "head.2.bias": (10,),
    }
    return s


def random_released_state(shapes: dict, seed: int = 0) -> dict:
    """A random state dict of sane scale for these shapes: weights N(0, 1/fan_in), biases
    N(0, 0.1), BN weight ~1, bias ~0, running mean N(0, 0.1), running var in [0.5, 1.5], PReLU
    slopes in [0.1, 0.4]. Scales chosen so that no branch saturates the fusion softmax."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in shapes.items():
        is_bn = k.rsplit(".", 1)[0] + ".running_mean" in shapes
        if shape == ():
            out[k] = torch.tensor(7, dtype=torch.long)
        elif k.endswith("running_var"):
            out[k] = 0.5 + torch.rand(shape, generator=g)
        elif k.endswith(("relu1.weight", "relu7.weight")):
            out[k] = 0.1 + 0.3 * torch.rand(shape, generator=g)
        elif is_bn and k.endswith(".weight"):
            out[k] = 1 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # biases, BN biases and running means
            out[k] = 0.1 * torch.randn(shape, generator=g)
        else:
            out[k] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
    return out
