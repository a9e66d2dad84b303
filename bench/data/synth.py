"""The embedded benchmark: procedurally generated, long-tailed image-aesthetics datasets.

Real IAA datasets cannot be downloaded here, so the harness's default data is synthetic. Four
presets mirror the four datasets of the paper; each one's label-score histogram follows the
paper's Figure 1 counts for that dataset over the bins [0,2), [2,3), ..., [7,8), [8,10] of the
10-point scale. It is not AVA; it exists to show the long-tail bias the paper attacks.

Labels
------
Every image has a *true score* ``t`` (what an infinitely large, unbiased panel would give) and
a *label*: the mean vote of a finite panel of simulated raters, so labels carry rater
subjectivity. Raters are drawn from a pool with a personal bias each (``rater_bias_std``) and
vote ``round(centre + bias + noise)`` on the dataset's native integer scale, clipped to it
(AVA, TAD66K: 1..10; AADB, PARA: 1..5); the panel mean is mapped linearly onto the preset's
10-point range ``[low, high]`` (AADB 1..5 -> [0, 10]; PARA 1..5 doubled -> [2, 10]).
``synth-ava`` keeps the whole vote histogram (a 10-bin rating distribution, trained with EMD);
the other presets keep only the mean (trained with MSE, as in the paper's Appendix A.2).

Two effects would make the histogram of the *final* labels drift from Figure 1: clipping votes
at the ends of the scale pulls panel means towards the centre, and the finite panel blurs them.
Both are compensated:

1. Clipping: a true score ``t`` is drawn from the Figure 1 histogram (uniform within a bin),
   and the raters' centre ``c`` is solved so that the *expected* clipped vote equals ``t``.
   With Gaussian vote noise the expectation has a closed form,
   ``E[vote] = 1 + sum_k Phi((c - k - 1/2) / sigma)``, monotone in ``c``, inverted by bisection.
2. Blur: candidates are generated in rounds and accepted into the bin of their *realized*
   label until each bin holds its quota, itself a multinomial draw from Figure 1's proportions.
   So the final labels follow Figure 1 up to multinomial sampling error, while the true score
   behind a label still differs from it by the panel's noise.

Images
------
A scene is a shaded subject (a circle, blob, flower or regular polygon, with a drop shadow) in
front of a textured background (gradient, vignette, stripes, clouds or horizon). The true score
is standardized within its preset, ``z = (t - mean) / std`` (moments of Figure 1's histogram),
so every preset has the same signal-to-noise whatever its score spread. Seven attributes people
associate with aesthetics each get their *own* noisy copy of ``z``,
``u = sigmoid(attribute_gain * (z + N(0, attribute_noise^2)))`` in (0, 1), 1 being good:

- exposure: mean luminance near 0.5, or too dark / too bright (direction at random);
- contrast: full tonal range, or washed out;
- sharpness: crisp, or Gaussian-blurred (blur radius scales with the image size);
- noise: clean, or with additive luminance noise;
- colour harmony: a harmonious hue scheme (monochrome, analogous, complementary) with a vivid
  subject on a muted background, or discordant hues, over-saturation and garish clutter spots;
- placement: subject near a rule-of-thirds point, or pushed against an edge and cut off;
- separation: subject clearly lighter or darker than a calm background, or lost in a busy one.

Nuisance that does not depend on quality (subject shape, size and base hue, background texture
type, lighting direction, exposure direction) keeps any single attribute from being a perfect
cue, as do the per-attribute noise and the raters. The difficulty knobs sit together in
:class:`Difficulty`; :data:`DIFFICULTY` is the default.

Every image also has a *scene category*, its background texture (gradient, vignette, stripes,
clouds, horizon) times its subject's outline (round: circle, blob or flower; or a polygon):
:data:`N_SCENES` = 10 categories, read off nuisance draws the generator makes anyway, so
adding it changed no image or label. It is independent of quality and plays the part of a
theme: the group id of BIAA's meta-learning tasks (as AVA's challenges) and the label on which
TANet's theme network is pre-trained (as Places365 scenes).

The ``unlabeled`` split is the pool for self-training: drawn from the three *other* presets in
about equal thirds, labels withheld, no larger than the training split (Appendix A.2).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import expit, ndtr

from bench.data.types import IAADataset, LabelKind, Split, fingerprint
from iaa_common import NUM_BINS, UserError

GENERATOR_VERSION = 4
"""Bump whenever generation changes, so that no cache written by an older generator is used.
Version 3: generated with NumPy's runtime SIMD dispatch disabled (see :func:`load_synth`).
Version 4: OpenBLAS's kernels pinned too (:func:`portable_env`). The bytes are version 3's on
CPUs whose OpenBLAS chose its Haswell or Zen kernels (the golden hashes are unchanged); on
AVX-512 CPUs (SkylakeX, Cooperlake, SapphireRapids kernels) version 3 gave other bytes."""

BIN_EDGES: tuple[float, ...] = (0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0)
"""Score bins of the paper's Figure 1 on the 10-point scale; the last bin is closed."""

SPLITS = ("train", "val", "test", "unlabeled")


@dataclass(frozen=True)
class Preset:
    """One synthetic dataset: its Figure 1 histogram, score range and rating scale."""

    name: str
    paper_dataset: str
    label_kind: LabelKind
    counts: tuple[int, ...]
    """Figure 1 image counts per bin of :data:`BIN_EDGES` ("7K" read as 7000)."""
    low: float
    high: float
    vote_levels: int
    """Number of integer vote levels 1..L on the dataset's native rating scale."""

    @property
    def probs(self) -> np.ndarray:
        """Figure 1's proportions per bin."""
        counts = np.asarray(self.counts, dtype=np.float64)
        return counts / counts.sum()

    @property
    def bin_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Each bin's lower and upper edge, cut to the preset's score range."""
        edges = np.clip(np.asarray(BIN_EDGES), self.low, self.high)
        return edges[:-1], edges[1:]

    @property
    def moments(self) -> tuple[float, float]:
        """Mean and standard deviation of Figure 1's histogram, uniform within each bin."""
        lo, hi = self.bin_bounds
        p = self.probs
        mid = (lo + hi) / 2
        mean = float(p @ mid)
        var = float(p @ ((hi - lo) ** 2 / 12 + (mid - mean) ** 2))
        return mean, var**0.5


FIGURE1_COUNTS: dict[str, tuple[int, ...]] = {
    # Figure 1 of the paper: images per score bin [0,2), [2,3), [3,4), [4,5), [5,6), [6,7),
    # [7,8), [8,10] of each dataset ("7K" read as 7000).
    "AVA": (6, 491, 7000, 60000, 116000, 43000, 3000, 46),
    "AADB": (506, 826, 1000, 2000, 880, 2000, 967, 640),
    "TAD66K": (180, 2000, 7000, 11000, 12000, 11000, 7000, 1000),
    "PARA": (0, 81, 1000, 2000, 8000, 13000, 3000, 114),
}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        # AVA: 10-bin rating distributions over ratings 1..10.
        Preset("synth-ava", "AVA", "dist", FIGURE1_COUNTS["AVA"], 1, 10, 10),
        # AADB: 1..5 votes, normalized to [0, 1] by the dataset, here x10.
        Preset("synth-aadb", "AADB", "scalar", FIGURE1_COUNTS["AADB"], 0, 10, 5),
        # TAD66K: mean of 1..10 votes.
        Preset("synth-tad66k", "TAD66K", "scalar", FIGURE1_COUNTS["TAD66K"], 1, 10, 10),
        # PARA: mean of 1..5 votes, doubled onto the 10-point scale.
        Preset("synth-para", "PARA", "scalar", FIGURE1_COUNTS["PARA"], 2, 10, 5),
    )
}


@dataclass(frozen=True)
class Difficulty:
    """How hard the benchmark is: the knobs to calibrate against a baseline's validation scores.

    Noise and gain act on the preset-standardized true score ``z``; rater terms are in points of
    the 10-point scale.
    """

    attribute_noise: float = 1.5
    """Std of each attribute's own noise on ``z``: the larger, the weaker every visual cue."""
    attribute_gain: float = 1.0
    """Slope of the sigmoid from noisy ``z`` to an attribute's goodness; lower keeps the tails
    more distinguishable, higher saturates them."""
    rater_noise: float = 1.2
    """Std of a single vote around the rater's own centre."""
    rater_bias_std: float = 0.5
    """Std of the raters' personal biases (a rater keeps one bias across images)."""
    controversy_std: float = 0.25
    """Log-std of a per-image factor on ``rater_noise``: some images divide raters more."""
    raters_ava: tuple[int, int] = (40, 80)
    """Inclusive range of the number of raters per image of synth-ava."""
    raters_aadb: tuple[int, int] = (5, 5)
    """Raters per image of synth-aadb (AADB has five per image)."""
    raters_tad66k: tuple[int, int] = (8, 16)
    """Raters per image of synth-tad66k."""
    raters_para: tuple[int, int] = (20, 30)
    """Raters per image of synth-para (PARA has about 25 per image)."""

    def raters(self, preset: Preset) -> tuple[int, int]:
        """The panel-size range for ``preset``."""
        return getattr(self, f"raters_{preset.paper_dataset.lower()}")


DIFFICULTY = Difficulty()


@dataclass(frozen=True)
class Sizes:
    """Images per split. The unlabeled pool is clipped to ``n_train`` by :func:`generate`."""

    n_train: int
    n_val: int
    n_test: int
    n_unlabeled: int

    def __post_init__(self) -> None:
        for field in ("n_train", "n_val", "n_test", "n_unlabeled"):
            value = getattr(self, field)
            least = 0 if field == "n_unlabeled" else 1
            if not isinstance(value, int | np.integer) or value < least:
                raise UserError(f"{field} must be an integer >= {least}, got {value!r}")


@dataclass(frozen=True)
class Labels:
    """What :func:`sample_labels` draws for ``n`` images."""

    true_scores: np.ndarray
    """(n,) float64: the expected panel mean, which drives the image's appearance."""
    scores: np.ndarray
    """(n,) float32: the label, the realized panel mean on the 10-point scale."""
    dists: np.ndarray | None
    """(n, 10) float32 vote histograms over ratings 1..10 (distribution presets), else None."""
    n_raters: np.ndarray
    """(n,) int: the panel size of each image."""


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a :class:`UserError` listing the valid names otherwise."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(PRESETS))
        raise UserError(f"unknown synthetic preset {name!r}; valid presets: {valid}") from None


# --------------------------------------------------------------------------------------- labels

_RATER_POOL = 500  # raters per call of sample_labels; each rater keeps one bias
_MAX_ROUNDS = 200  # safety net for the accept-by-bin loop; a few rounds suffice in practice


def _score_bins(scores: np.ndarray) -> np.ndarray:
    """Index of each score's Figure 1 bin (the last bin, [8, 10], includes 10)."""
    return np.searchsorted(np.asarray(BIN_EDGES[1:-1]), scores, side="right")


def _solve_centre(target: np.ndarray, sigma: np.ndarray, levels: int) -> np.ndarray:
    """Raters' centre ``c`` whose expected clipped, rounded vote equals ``target``.

    A vote ``clip(round(c + e), 1, L)`` with ``e ~ N(0, sigma^2)`` has expectation
    ``1 + sum_{k=1}^{L-1} Phi((c - k - 1/2) / sigma)``, increasing in ``c``: bisect.
    """
    thresholds = np.arange(1, levels) + 0.5
    lo = np.full_like(target, -float(levels))
    hi = np.full_like(target, 2.0 * levels)
    for _ in range(48):
        mid = (lo + hi) / 2
        expected = 1 + ndtr((mid[:, None] - thresholds) / sigma[:, None]).sum(axis=1)
        below = expected < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return (lo + hi) / 2


def _draw_candidates(
    preset: Preset,
    bin_probs: np.ndarray,
    m: int,
    biases: np.ndarray,
    rng: np.random.Generator,
    difficulty: Difficulty,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """``m`` candidate images: true scores from the histogram, then a rater panel for each."""
    lo, hi = preset.bin_bounds
    b = rng.choice(len(bin_probs), size=m, p=bin_probs)
    true = lo[b] + (hi[b] - lo[b]) * rng.random(m)

    levels = preset.vote_levels
    to_native = (levels - 1) / (preset.high - preset.low)
    rater_range = difficulty.raters(preset)
    n_raters = rng.integers(rater_range[0], rater_range[1] + 1, size=m)
    noise = difficulty.rater_noise * np.exp(difficulty.controversy_std * rng.standard_normal(m))
    sigma = np.sqrt(noise**2 + difficulty.rater_bias_std**2) * to_native
    centre = _solve_centre(1 + (true - preset.low) * to_native, sigma, levels)

    width = rater_range[1]
    raters = rng.integers(0, len(biases), size=(m, width))
    raw = centre[:, None] + (biases[raters] + noise[:, None] * rng.standard_normal((m, width)))
    votes = np.clip(np.rint(raw), 1, levels).astype(np.int64)
    valid = np.arange(width) < n_raters[:, None]
    if preset.label_kind == "dist":
        onehot = (votes[:, :, None] == np.arange(1, NUM_BINS + 1)) & valid[:, :, None]
        dists = onehot.sum(axis=1) / n_raters[:, None]
        mean_vote = dists @ np.arange(1, NUM_BINS + 1)
    else:
        dists = None
        mean_vote = np.where(valid, votes, 0).sum(axis=1) / n_raters
    # Round off float error, so that a label sitting on a bin edge (4.0) is binned as stored.
    scores = np.round(preset.low + (mean_vote - 1) / to_native, 6).astype(np.float32)
    return true, scores, dists, n_raters


def sample_labels(
    preset: str | Preset,
    n: int,
    rng: np.random.Generator,
    difficulty: Difficulty = DIFFICULTY,
) -> Labels:
    """Draw ``n`` images' true scores and rater labels whose histogram follows Figure 1.

    Bin quotas are a multinomial draw from Figure 1's proportions; candidates (true score from
    the histogram, centre solved against vote clipping, simulated panel) are generated in rounds
    and each is kept if the bin of its realized label still has room. Later rounds propose true
    scores in proportion to the remaining quotas, so rare bins fill quickly.
    """
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    probs = preset.probs
    quota = rng.multinomial(n, probs)
    biases = difficulty.rater_bias_std * rng.standard_normal(_RATER_POOL)
    kept: list[tuple[np.ndarray, ...]] = []
    proposal = probs
    for _ in range(_MAX_ROUNDS):
        missing = int(quota.sum())
        if missing == 0:
            break
        cand = _draw_candidates(preset, proposal, 2 * missing + 32, biases, rng, difficulty)
        bins = _score_bins(cand[1])
        # Rank of each candidate among earlier candidates of its bin: keep it if within quota.
        order = np.argsort(bins, kind="stable")
        starts = np.searchsorted(bins[order], np.arange(len(probs)))
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order)) - starts[bins[order]]
        take = rank < quota[bins]
        quota -= np.bincount(bins[take], minlength=len(probs))
        kept.append(tuple(x[take] for x in cand if x is not None))
        proposal = quota / max(quota.sum(), 1)
    else:
        raise RuntimeError(f"could not fill the score bins of {preset.name}")

    columns = [np.concatenate(c) for c in zip(*kept, strict=True)]
    perm = rng.permutation(n)
    true, scores = columns[0][perm], columns[1][perm]
    dists = columns[2][perm].astype(np.float32) if preset.label_kind == "dist" else None
    n_raters = columns[-1][perm]
    return Labels(true, scores, dists, n_raters)


# -------------------------------------------------------------------------------------- images

_ATTRIBUTES = (
    "exposure",
    "contrast",
    "sharpness",
    "noise",
    "harmony",
    "placement",
    "separation",
)
_MAX_CLUTTER = 6  # garish spots on the least harmonious images
_N_TEXTURES = 5  # gradient, vignette, stripes, clouds, horizon
N_SCENES = 2 * _N_TEXTURES  # scene category = texture x (round subject | polygon subject)
_PIXEL_BUDGET = 1 << 19  # pixels per rendered chunk (bounds memory at large sizes)
_MAX_THREADS = 4  # rendering threads, at most (numpy releases the GIL in array arithmetic)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorized HSV -> RGB for arrays of the same shape; returns shape + (3,)."""
    k = (np.stack([5.0, 3.0, 1.0]) + (h % 1.0)[..., None] * 6) % 6
    rgb = v[..., None] - (v * s)[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1)
    return rgb.astype(np.float32)


def _scene_params(
    true_scores: np.ndarray, preset: Preset, rng: np.random.Generator, difficulty: Difficulty
) -> dict[str, np.ndarray]:
    """Per-image scene parameters: attribute goodness from noisy quality, plus nuisance."""
    n = len(true_scores)
    mean, std = preset.moments
    z = (true_scores - mean) / std
    noisy = z[:, None] + difficulty.attribute_noise * rng.standard_normal((n, len(_ATTRIBUTES)))
    good = dict(zip(_ATTRIBUTES, expit(difficulty.attribute_gain * noisy).T, strict=True))
    bad = {k: 1 - v for k, v in good.items()}
    p: dict[str, np.ndarray] = {}

    # Exposure: target mean luminance, off 0.5 towards dark or bright (nuisance direction).
    direction = rng.choice([-1.0, 1.0], size=n)
    p["target_luma"] = 0.5 + direction * 0.42 * bad["exposure"] ** 1.3
    p["contrast"] = 0.3 + 0.75 * good["contrast"]
    p["blur_frac"] = 0.055 * bad["sharpness"] ** 2  # blur std as a fraction of the image size
    p["noise_std"] = 0.004 + 0.13 * bad["noise"] ** 2

    # Colour: base hue is nuisance; the subject/background hue offset moves from a harmonious
    # scheme (monochrome, analogous, complementary) towards a discordant ~90 degree offset.
    base_hue = rng.random(n)
    scheme = rng.choice([0.0, 1 / 12, -1 / 12, 0.5], size=n)
    discord = rng.choice([-1.0, 1.0], size=n) * rng.uniform(0.2, 0.3, size=n)
    w = bad["harmony"]
    p["sub_hue"] = base_hue
    p["bg_hue"] = base_hue + scheme + w * (discord - scheme)
    p["sub_sat"] = np.clip(0.65 + 0.3 * w + 0.05 * rng.standard_normal(n), 0, 1)
    p["bg_sat"] = np.clip(0.3 + 0.65 * w + 0.05 * rng.standard_normal(n), 0, 1)
    active = np.arange(_MAX_CLUTTER) < np.floor(7 * w**3 + rng.random(n))[:, None]
    p["clutter_active"] = active
    p["clutter_xy"] = rng.random((n, _MAX_CLUTTER, 2))
    p["clutter_r"] = rng.uniform(0.025, 0.07, size=(n, _MAX_CLUTTER))
    p["clutter_rgb"] = _hsv_to_rgb(
        rng.random((n, _MAX_CLUTTER)), np.full((n, _MAX_CLUTTER), 0.95), np.full((n, 1), 0.95)
    )

    # Placement: from a rule-of-thirds point to a spot hugging one edge (possibly cut off).
    thirds = rng.choice([1 / 3, 2 / 3], size=(n, 2))
    awkward = rng.uniform(0.1, 0.9, size=(n, 2))
    axis = rng.integers(0, 2, size=n)
    edge = rng.uniform(0.03, 0.13, size=n)
    awkward[np.arange(n), axis] = np.where(rng.random(n) < 0.5, edge, 1 - edge)
    u = good["placement"][:, None]
    p["centre"] = u * thirds + (1 - u) * awkward + 0.025 * rng.standard_normal((n, 2))

    # Separation: value gap between subject and background, background busyness.
    gap = 0.08 + 0.45 * good["separation"]
    value = rng.uniform(0.42, 0.6, size=n)
    lighter = rng.choice([-1.0, 1.0], size=n)
    p["sub_val"] = value + lighter * gap / 2
    p["bg_val"] = value - lighter * gap / 2
    p["texture_amp"] = 0.08 + 0.4 * bad["separation"]
    p["texture_freq"] = 1 + 2 * bad["separation"]

    # Nuisance: shape, size, lighting, background texture.
    p["radius"] = rng.uniform(0.13, 0.26, size=n)
    p["polygon"] = rng.random(n) < 0.4
    p["sides"] = rng.integers(3, 7, size=n)  # polygons
    p["petals"] = rng.integers(2, 7, size=n)  # blobs and flowers
    p["petal_amp"] = rng.choice([0.0, 1.0], size=n, p=[0.3, 0.7]) * rng.uniform(0.05, 0.3, n)
    p["aspect"] = rng.uniform(0.75, 1.3, size=n)
    p["angle"] = rng.uniform(0, 2 * np.pi, size=n)
    light = rng.uniform(0, 2 * np.pi, size=n)
    p["light"] = np.stack([np.cos(light), np.sin(light)], axis=1)
    p["light_strength"] = rng.uniform(0.1, 0.3, size=n)
    p["texture"] = rng.integers(0, _N_TEXTURES, size=n)
    p["texture_dir"] = rng.uniform(0, 2 * np.pi, size=(n, 3))
    p["texture_phase"] = rng.uniform(0, 2 * np.pi, size=(n, 3))
    p["texture_base_freq"] = rng.uniform(1.0, 2.5, size=(n, 3))
    p["horizon"] = rng.uniform(0.35, 0.7, size=n)
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in p.items()}


def _col(x: np.ndarray) -> np.ndarray:
    """(n,) -> (n, 1, 1) float32, to broadcast against (n, H, W)."""
    return np.asarray(x, dtype=np.float32)[:, None, None]


def _wrap(x: np.ndarray, period: np.ndarray) -> np.ndarray:
    """``x mod period`` (numpy's float ``%`` is several times slower)."""
    return x - period * np.floor(x / period)


def _shape_distance(p: dict[str, np.ndarray], xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Signed distance (image units, negative inside) to each image's subject outline."""
    dx = xx - _col(p["centre"][:, 0])
    dy = yy - _col(p["centre"][:, 1])
    cos, sin = _col(np.cos(p["angle"])), _col(np.sin(p["angle"]))
    aspect = _col(p["aspect"])
    x = (cos * dx + sin * dy) / aspect
    y = (cos * dy - sin * dx) * aspect
    theta = np.arctan2(y, x)
    outline = _col(p["radius"]) * (1 + _col(p["petal_amp"]) * np.cos(_col(p["petals"]) * theta))
    poly = np.flatnonzero(p["polygon"])
    half = np.pi / _col(p["sides"][poly])
    wrapped = _wrap(theta[poly], 2 * half) - half
    outline[poly] = _col(p["radius"][poly]) * np.cos(half) / np.cos(wrapped)
    return np.hypot(x, y) - outline


def _texture(p: dict[str, np.ndarray], xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Background pattern in about [-1, 1] for each image, by its texture type."""
    n = len(p["texture"])
    out = np.empty((n, yy.shape[1], xx.shape[2]), dtype=np.float32)
    dirs = p["texture_dir"]
    freq = p["texture_base_freq"] * p["texture_freq"][:, None]
    for kind in range(_N_TEXTURES):
        idx = np.flatnonzero(p["texture"] == kind)
        if idx.size == 0:
            continue
        proj = [
            _col(np.cos(dirs[idx, j])) * (xx - 0.5) + _col(np.sin(dirs[idx, j])) * (yy - 0.5)
            for j in range(3)
        ]
        if kind == 0:  # linear gradient
            pattern = 2 * proj[0]
        elif kind == 1:  # radial vignette
            pattern = 1 - 3 * np.hypot(proj[0], proj[1])
        elif kind == 2:  # stripes
            pattern = np.sin(
                2 * np.pi * _col(2 * freq[idx, 0]) * proj[0] + _col(p["texture_phase"][idx, 0])
            )
        elif kind == 3:  # clouds: a few crossing waves
            pattern = (
                sum(
                    np.sin(
                        2 * np.pi * _col(freq[idx, j]) * proj[j] + _col(p["texture_phase"][idx, j])
                    )
                    for j in range(3)
                )
                / 1.7
            )
        else:  # horizon: sky above a tilted line, ground below
            pattern = np.tanh(12 * (0.15 * proj[1] + yy - _col(p["horizon"][idx])))
        out[idx] = np.clip(pattern, -1, 1)
    return out


def _blur(images: np.ndarray, sigma_px: np.ndarray) -> None:
    """Gaussian blur, in place, of each image with its own std in pixels.

    Stds under a quarter pixel are skipped: their kernels are practically the identity.
    """
    for i in np.flatnonzero(sigma_px >= 0.25):
        s = float(sigma_px[i])
        images[i] = gaussian_filter(images[i], (s, s, 0), mode="reflect", truncate=3.0)


def _shift(layer: np.ndarray, offset_px: np.ndarray) -> np.ndarray:
    """Translate each (H, W) layer by its own whole-pixel (dx, dy), repeating the border."""
    n, h, w = layer.shape
    rows = np.clip(np.arange(h) - offset_px[:, 1:2], 0, h - 1)
    cols = np.clip(np.arange(w) - offset_px[:, 0:1], 0, w - 1)
    return layer[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _render_chunk(p: dict[str, np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one chunk of scenes to uint8 RGB, shape (n, size, size, 3)."""
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = grid[None, :, None], grid[None, None, :]
    px = np.float32(size)
    light = p["light"]
    lx, ly = _col(light[:, 0]), _col(light[:, 1])

    # Background: colour times texture and global light, then garish clutter spots.
    shade = 1 + _col(p["light_strength"]) * 2 * (lx * (xx - 0.5) + ly * (yy - 0.5))
    tone = (1 + _col(p["texture_amp"]) * _texture(p, xx, yy)) * shade
    img = _hsv_to_rgb(p["bg_hue"], p["bg_sat"], p["bg_val"])[:, None, None, :] * tone[..., None]
    for k in range(int(p["clutter_active"].sum(axis=1).max(initial=0))):
        idx = np.flatnonzero(p["clutter_active"][:, k])
        centre, radius = p["clutter_xy"][idx, k], p["clutter_r"][idx, k]
        dist = np.hypot(xx - _col(centre[:, 0]), yy - _col(centre[:, 1])) - _col(radius)
        cover = np.clip(0.5 - dist * px, 0, 1)[..., None]
        img[idx] += (p["clutter_rgb"][idx, k, None, None, :] - img[idx]) * cover

    # Subject: a soft drop shadow away from the light, then the shaded subject, anti-aliased.
    dist = _shape_distance(p, xx, yy) * px
    shadow_px = np.rint(-0.35 * p["radius"][:, None] * light * size).astype(np.int64)
    img *= (1 - 0.35 * _shift(np.clip(0.5 - dist / 3, 0, 1), shadow_px))[..., None]
    rel_x = (xx - _col(p["centre"][:, 0])) / _col(p["radius"])
    rel_y = (yy - _col(p["centre"][:, 1])) / _col(p["radius"])
    sub_shade = np.clip(1 + 0.3 * (lx * rel_x + ly * rel_y), 0.5, 1.4)
    sub = _hsv_to_rgb(p["sub_hue"], p["sub_sat"], p["sub_val"])[:, None, None, :]
    img += (sub * sub_shade[..., None] - img) * np.clip(0.5 - dist, 0, 1)[..., None]
    np.clip(img, 0, 1, out=img)

    # Camera: blur, contrast about the mean luminance, exposure (a gamma taking the mean
    # luminance to its target), luminance noise. Blur and contrast are linear, so their order
    # is immaterial, and neither moves the mean.
    _blur(img, p["blur_frac"] * size)
    luma = (img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean(axis=(1, 2))
    mean = np.clip(luma, 0.02, 0.98)
    img -= _col(mean)[..., None]
    img *= _col(p["contrast"])[..., None]
    img += _col(mean)[..., None]
    np.clip(img, 0, 1, out=img)
    img **= _col(np.clip(np.log(p["target_luma"]) / np.log(mean), 0.2, 5))[..., None]
    noise = rng.standard_normal(img.shape[:3], dtype=np.float32)
    noise *= _col(p["noise_std"] * 255)
    img *= 255
    img += noise[..., None] + 0.5
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)  # truncating x + 0.5: rounds to nearest


def _usable_cpus() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def render_images(
    true_scores: np.ndarray,
    preset: str | Preset,
    img_size: int,
    rng: np.random.Generator,
    difficulty: Difficulty = DIFFICULTY,
) -> np.ndarray:
    """Render one image per true score, uint8 RGB of shape (n, img_size, img_size, 3)."""
    return render_scenes(true_scores, preset, img_size, rng, difficulty)[0]


def scene_category(params: dict[str, np.ndarray]) -> np.ndarray:
    """(n,) int64 scene category in [0, N_SCENES): background texture x subject outline."""
    return params["texture"].astype(np.int64) * 2 + params["polygon"].astype(np.int64)


def render_scenes(
    true_scores: np.ndarray,
    preset: str | Preset,
    img_size: int,
    rng: np.random.Generator,
    difficulty: Difficulty = DIFFICULTY,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`render_images` and each image's :func:`scene_category` (the same draws)."""
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    params = _scene_params(np.asarray(true_scores, dtype=np.float64), preset, rng, difficulty)
    n = len(true_scores)
    out = np.empty((n, img_size, img_size, 3), dtype=np.uint8)
    chunk = max(1, _PIXEL_BUDGET // (img_size * img_size))
    starts = range(0, n, chunk)
    chunk_rngs = rng.spawn(len(starts))  # one stream per chunk: threads cannot reorder draws

    def render(start: int, chunk_rng: np.random.Generator) -> None:
        part = {k: v[start : start + chunk] for k, v in params.items()}
        out[start : start + chunk] = _render_chunk(part, img_size, chunk_rng)

    with ThreadPoolExecutor(max_workers=min(_MAX_THREADS, _usable_cpus())) as pool:
        list(pool.map(render, starts, chunk_rngs))
    return out, scene_category(params)


# ------------------------------------------------------------------------------------- dataset


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent stream per (seed, preset, split, ...), so splits do not share draws."""
    return np.random.default_rng([seed, *keys])


def _check_args(preset: str, img_size: int, sizes: Sizes, seed: int) -> Preset:
    """The preset, once every argument is valid; a :class:`UserError` naming the bad one."""
    spec = get_preset(preset)
    if not isinstance(img_size, int | np.integer) or img_size < 16:
        raise UserError(f"img_size must be an integer >= 16, got {img_size!r}")
    if not isinstance(sizes, Sizes):
        raise UserError(f"sizes must be a Sizes, got {type(sizes).__name__}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed!r}")
    return spec


def _labeled_split(
    spec: Preset, split: str, n: int, img_size: int, seed: int, difficulty: Difficulty
) -> Split:
    """``n`` labeled images of ``spec`` for one split, from that split's own random stream."""
    code = list(PRESETS).index(spec.name)
    rng = _rng(seed, code, SPLITS.index(split))
    labels = sample_labels(spec, n, rng, difficulty)
    images, scenes = render_scenes(labels.true_scores, spec, img_size, rng, difficulty)
    ids = [f"{spec.name}/{split}/{i:06d}" for i in range(n)]
    return Split(images=images, scores=labels.scores, dists=labels.dists, ids=ids, group=scenes)


def _unlabeled_split(
    spec: Preset, n: int, img_size: int, seed: int, difficulty: Difficulty
) -> Split:
    """The self-training pool: images of the three other presets in about equal thirds."""
    code = list(PRESETS).index(spec.name)
    others = [p for p in PRESETS.values() if p is not spec]
    shares = [n // len(others) + (i < n % len(others)) for i in range(len(others))]
    images, scenes, ids = [], [], []
    for other, share in zip(others, shares, strict=True):
        rng = _rng(seed, code, SPLITS.index("unlabeled"), list(PRESETS).index(other.name))
        true_scores = sample_labels(other, share, rng, difficulty).true_scores
        rendered, scene = render_scenes(true_scores, other, img_size, rng, difficulty)
        images.append(rendered)
        scenes.append(scene)
        ids += [f"{other.name}/pool/{i:06d}" for i in range(share)]
    perm = _rng(seed, code, SPLITS.index("unlabeled"), len(PRESETS)).permutation(n)
    return Split(
        images=np.concatenate(images)[perm],
        scores=np.full(n, np.nan, dtype=np.float32),
        dists=None,
        ids=[ids[i] for i in perm],
        group=np.concatenate(scenes)[perm],
    )


def generate(
    preset: str,
    img_size: int,
    sizes: Sizes,
    seed: int,
    *,
    difficulty: Difficulty = DIFFICULTY,
) -> IAADataset:
    """Generate a synthetic dataset; identical arrays for identical arguments.

    Train, validation and test are independent draws from ``preset``. The unlabeled pool has
    ``min(sizes.n_unlabeled, sizes.n_train)`` images from the other three presets, with NaN
    scores and no distributions; it is None when empty.
    """
    spec = _check_args(preset, img_size, sizes, seed)
    train, val, test = (
        _labeled_split(spec, split, n, img_size, seed, difficulty)
        for split, n in zip(SPLITS[:3], (sizes.n_train, sizes.n_val, sizes.n_test), strict=True)
    )
    n_pool = min(sizes.n_unlabeled, sizes.n_train)
    pool = _unlabeled_split(spec, n_pool, img_size, seed, difficulty) if n_pool else None
    return IAADataset(spec.name, spec.label_kind, train, val, test, pool)


def cache_path(
    preset: str,
    img_size: int,
    sizes: Sizes,
    seed: int,
    cache_dir: Path,
    *,
    difficulty: Difficulty = DIFFICULTY,
) -> Path:
    """Where :func:`load_synth` keeps this dataset: every input is in the file name."""
    knobs = hashlib.sha1(repr(difficulty).encode()).hexdigest()[:10]
    name = (
        f"{preset}_{img_size}px_n{sizes.n_train}-{sizes.n_val}-{sizes.n_test}-{sizes.n_unlabeled}"
        f"_seed{seed}_gen{GENERATOR_VERSION}_d{knobs}.npz"
    )
    return Path(cache_dir) / "synth" / name


def _to_arrays(data: IAADataset) -> dict[str, np.ndarray]:
    arrays = {"name": np.array(data.name), "label_kind": np.array(data.label_kind)}
    for split in SPLITS:
        part = getattr(data, split)
        if part is None:
            continue
        arrays[f"{split}_images"] = part.images
        arrays[f"{split}_scores"] = part.scores
        arrays[f"{split}_ids"] = np.array(part.ids)
        arrays[f"{split}_groups"] = part.group
        if part.dists is not None:
            arrays[f"{split}_dists"] = part.dists
    return arrays


def _from_arrays(arrays: dict[str, np.ndarray]) -> IAADataset:
    splits = {}
    for split in SPLITS:
        if f"{split}_images" not in arrays:
            splits[split] = None
            continue
        part = Split(
            images=arrays[f"{split}_images"],
            scores=arrays[f"{split}_scores"],
            dists=arrays.get(f"{split}_dists"),
            ids=arrays[f"{split}_ids"].tolist(),
            group=arrays[f"{split}_groups"],
        )
        lengths = {len(part.images), len(part.scores), len(part.ids), len(part.group)}
        if part.dists is not None:
            lengths.add(len(part.dists))
        if len(lengths) != 1:
            raise ValueError(f"inconsistent lengths in split {split}")
        splits[split] = part
    return IAADataset(str(arrays["name"]), str(arrays["label_kind"]), **splits)


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a compressed .npz so that readers only ever see a complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path, preset: str) -> IAADataset | None:
    """The dataset cached at ``path``, or None when absent, unreadable or of another preset."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = _from_arrays({k: npz[k] for k in npz.files})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None  # corrupt or foreign file: regenerated by the caller
    return data if data.name == preset else None


def portable_env() -> dict[str, str]:
    """The environment of a child process whose numerical kernels are the same code on every
    x86-64 CPU: NumPy's baseline kernels only (every runtime SIMD dispatch target disabled with
    ``NPY_DISABLE_CPU_FEATURES``) and, on x86-64, OpenBLAS's generic SSE3 kernels
    (``OPENBLAS_CORETYPE=Prescott``, one thread) for the matrix products.

    NumPy picks float32 exp, log, sin, ... kernels by CPU at run time (AVX2, AVX-512, ...), and
    OpenBLAS picks its gemv kernel by CPU too (Haswell, Zen, SkylakeX, SapphireRapids, ...);
    their last bits differ, and so would a few pixels of the rendered images, and every model
    trained on them, from one machine to another."""
    from numpy._core._multiarray_umath import __cpu_dispatch__

    root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "NPY_DISABLE_CPU_FEATURES": ",".join(__cpu_dispatch__),
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    if platform.machine().lower() in ("x86_64", "amd64"):
        env |= {"OPENBLAS_CORETYPE": "Prescott", "OPENBLAS_NUM_THREADS": "1"}
    return env


def _generate_portably(
    preset: str, img_size: int, sizes: Sizes, seed: int, difficulty: Difficulty, path: Path
) -> None:
    """:func:`generate` into ``path`` in a child process with :func:`portable_env`, so that the
    cached bytes are the same on every x86-64 CPU (tests/test_synth.py keeps golden hashes)."""
    env = portable_env()
    request = {
        "preset": preset,
        "img_size": img_size,
        "sizes": asdict(sizes),
        "seed": seed,
        "difficulty": asdict(difficulty),
        "path": str(path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.data.synth"],
        input=json.dumps(request),
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"generating {preset} failed: {done.stderr.strip()[-2000:]}")


def load_synth(
    preset: str,
    img_size: int,
    sizes: Sizes,
    seed: int,
    cache_dir: Path,
    *,
    difficulty: Difficulty = DIFFICULTY,
) -> IAADataset:
    """:func:`generate`, portably (:func:`_generate_portably`), cached in one compressed .npz
    under ``cache_dir/synth/``. The file name carries every input and
    :data:`GENERATOR_VERSION`; a cache that cannot be read back in full is regenerated."""
    _check_args(preset, img_size, sizes, seed)
    path = cache_path(preset, img_size, sizes, seed, cache_dir, difficulty=difficulty)
    data = _read(path, preset)
    if data is None:
        _generate_portably(preset, img_size, sizes, seed, difficulty, path)
        data = _read(path, preset)
        if data is None:
            raise RuntimeError(f"{path}: generated, but cannot be read back")
    data.fingerprint = fingerprint(data)
    return data


def _generate_from_request() -> None:
    """The child of :func:`_generate_portably`: a JSON request on stdin, the .npz written."""
    request = json.loads(sys.stdin.read())
    knobs = request["difficulty"]  # JSON lists back to the tuples the dataclass holds
    difficulty = {k: tuple(v) if isinstance(v, list) else v for k, v in knobs.items()}
    data = generate(
        request["preset"],
        request["img_size"],
        Sizes(**request["sizes"]),
        request["seed"],
        difficulty=Difficulty(**difficulty),
    )
    _write_atomic(Path(request["path"]), _to_arrays(data))


if __name__ == "__main__":
    _generate_from_request()
