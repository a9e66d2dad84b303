"""Tests of the embedded synthetic benchmark (bench/data/synth.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
from scipy import ndimage
from scipy.stats import spearmanr

from bench.data import synth
from bench.data.registry import DATA_SEED, load_dataset
from bench.data.synth import PRESETS, Sizes, generate, load_synth, sample_labels
from bench.data.types import IAADataset
from bench.profiles import get_profile
from iaa_common import UserError

ROOT = Path(__file__).resolve().parent.parent
PRESET_NAMES = sorted(PRESETS)

SMALL = Sizes(n_train=12, n_val=5, n_test=6, n_unlabeled=9)


def _assert_same(a: IAADataset, b: IAADataset) -> None:
    assert (a.name, a.label_kind) == (b.name, b.label_kind)
    for split in synth.SPLITS:
        x, y = getattr(a, split), getattr(b, split)
        assert (x is None) == (y is None)
        if x is None:
            continue
        assert x.images.dtype == y.images.dtype == np.uint8
        assert x.images.tobytes() == y.images.tobytes()
        np.testing.assert_array_equal(x.scores, y.scores)
        assert (x.dists is None) == (y.dists is None)
        if x.dists is not None:
            np.testing.assert_array_equal(x.dists, y.dists)
        assert x.ids == y.ids


def _histogram(scores: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(scores, bins=synth.BIN_EDGES)  # numpy's last bin is closed too
    return counts / counts.sum()


def test_presets_carry_figure1_counts() -> None:
    assert set(PRESETS) == {"synth-ava", "synth-aadb", "synth-tad66k", "synth-para"}
    assert PRESETS["synth-ava"].counts == (6, 491, 7000, 60000, 116000, 43000, 3000, 46)
    assert PRESETS["synth-para"].counts[0] == 0
    assert [p.label_kind for p in PRESETS.values()] == ["dist", "scalar", "scalar", "scalar"]
    assert {p.name: (p.low, p.high) for p in PRESETS.values()} == {
        "synth-ava": (1, 10),
        "synth-aadb": (0, 10),
        "synth-tad66k": (1, 10),
        "synth-para": (2, 10),
    }


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_label_histogram_follows_figure1(preset: str) -> None:
    labels = sample_labels(preset, 5000, np.random.default_rng(7))
    spec = PRESETS[preset]
    tvd = 0.5 * np.abs(_histogram(labels.scores) - spec.probs).sum()
    assert tvd <= 0.04
    assert spec.low <= labels.scores.min() and labels.scores.max() <= spec.high
    # Labels are not the latent: the raters add noise.
    assert 0.5 < np.corrcoef(labels.true_scores, labels.scores)[0, 1] < 0.999


def test_ava_labels_are_rating_distributions() -> None:
    labels = sample_labels("synth-ava", 2000, np.random.default_rng(3))
    dists, n = labels.dists, labels.n_raters
    assert dists.shape == (2000, 10) and dists.dtype == np.float32
    assert (dists >= 0).all()
    np.testing.assert_allclose(dists.sum(axis=1), 1, atol=1e-5)
    votes = dists * n[:, None]
    np.testing.assert_allclose(votes, np.rint(votes), atol=1e-3)
    lo, hi = synth.DIFFICULTY.raters_ava
    assert lo <= n.min() and n.max() <= hi
    np.testing.assert_allclose(labels.scores, dists @ np.arange(1, 11), atol=1e-5)


def test_generated_ava_splits_hold_distributions() -> None:
    data = generate("synth-ava", 16, SMALL, seed=0)
    assert data.label_kind == "dist"
    for split in (data.train, data.val, data.test):
        assert split.dists.shape == (len(split), 10)
        np.testing.assert_allclose(split.dists.sum(axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(split.scores, split.dists @ np.arange(1, 11), atol=1e-5)


@pytest.mark.parametrize("preset", ["synth-aadb", "synth-tad66k", "synth-para"])
def test_scalar_presets(preset: str) -> None:
    data = generate(preset, 16, SMALL, seed=1)
    spec = PRESETS[preset]
    assert data.label_kind == "scalar"
    for split in (data.train, data.val, data.test):
        assert split.dists is None
        assert np.isfinite(split.scores).all()
        assert spec.low <= split.scores.min() and split.scores.max() <= spec.high


def test_shapes_and_ids() -> None:
    data = generate("synth-aadb", 20, SMALL, seed=0)
    assert data.name == "synth-aadb"
    assert data.train.images.shape == (12, 20, 20, 3)
    assert (len(data.train), len(data.val), len(data.test)) == (12, 5, 6)
    assert data.train.ids[3] == "synth-aadb/train/000003"
    assert data.test.ids[-1] == "synth-aadb/test/000005"
    assert len(set(data.val.ids)) == 5


def test_generate_is_deterministic() -> None:
    a = generate("synth-ava", 24, SMALL, seed=5)
    _assert_same(a, generate("synth-ava", 24, SMALL, seed=5))
    b = generate("synth-ava", 24, SMALL, seed=6)
    assert a.train.images.tobytes() != b.train.images.tobytes()
    assert not np.array_equal(a.train.scores, b.train.scores)


def test_rendering_does_not_depend_on_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "_PIXEL_BUDGET", 16 * 16 * 4)  # several chunks
    threaded = generate("synth-ava", 16, SMALL, seed=4)
    monkeypatch.setattr(synth, "_MAX_THREADS", 1)
    _assert_same(threaded, generate("synth-ava", 16, SMALL, seed=4))


def test_splits_are_independent_draws() -> None:
    a = generate("synth-para", 16, Sizes(10, 4, 4, 0), seed=2)
    b = generate("synth-para", 16, Sizes(30, 4, 4, 0), seed=2)
    assert a.val.images.tobytes() == b.val.images.tobytes()  # not shifted by the train size
    assert a.val.images.tobytes() != a.test.images[:4].tobytes()


def test_unlabeled_pool_comes_from_the_other_presets() -> None:
    data = generate("synth-tad66k", 16, Sizes(30, 2, 2, 100), seed=0)
    pool = data.unlabeled
    assert len(pool) == 30  # clipped to n_train
    assert pool.images.shape == (30, 16, 16, 3)
    assert np.isnan(pool.scores).all() and pool.dists is None
    sources = [i.split("/")[0] for i in pool.ids]
    assert "synth-tad66k" not in sources
    assert {s: sources.count(s) for s in set(sources)} == {
        "synth-ava": 10,
        "synth-aadb": 10,
        "synth-para": 10,
    }
    assert all(re.fullmatch(r"synth-[a-z0-9]+/pool/\d{6}", i) for i in pool.ids)
    assert len(set(pool.ids)) == 30
    assert generate("synth-tad66k", 16, Sizes(3, 2, 2, 0), seed=0).unlabeled is None


def test_bad_arguments_are_user_errors() -> None:
    with pytest.raises(UserError, match="synth-aadb.*synth-ava.*synth-para.*synth-tad66k"):
        generate("synth-foo", 32, SMALL, seed=0)
    with pytest.raises(UserError, match="img_size"):
        generate("synth-ava", 15, SMALL, seed=0)
    with pytest.raises(UserError, match="n_val"):
        Sizes(5, 0, 5, 0)
    with pytest.raises(UserError, match="n_unlabeled"):
        Sizes(5, 5, 5, -1)
    with pytest.raises(UserError, match="seed"):
        generate("synth-ava", 32, SMALL, seed=-1)
    with pytest.raises(UserError, match="unknown"):
        load_synth("ava", 32, SMALL, 0, Path("unused"))


def test_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_synth("synth-ava", 16, SMALL, 3, tmp_path)
    files = list((tmp_path / "synth").iterdir())
    assert len(files) == 1
    name = files[0].name
    assert name.endswith(".npz") and "synth-ava" in name and "16px" in name and "seed3" in name
    assert f"gen{synth.GENERATOR_VERSION}" in name and "12-5-6-9" in name

    def fail(*args: object, **kwargs: object) -> IAADataset:
        raise AssertionError("regenerated despite a valid cache")

    monkeypatch.setattr(synth, "_generate_portably", fail)
    _assert_same(first, load_synth("synth-ava", 16, SMALL, 3, tmp_path))


def test_cache_name_depends_on_difficulty(tmp_path: Path) -> None:
    harder = synth.Difficulty(attribute_noise=3.0)
    paths = {
        synth.cache_path("synth-ava", 16, SMALL, 0, tmp_path),
        synth.cache_path("synth-ava", 16, SMALL, 0, tmp_path, difficulty=harder),
        synth.cache_path("synth-ava", 16, SMALL, 1, tmp_path),
    }
    assert len(paths) == 3


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_cache_is_regenerated(tmp_path: Path, damage: str) -> None:
    path = synth.cache_path("synth-aadb", 16, SMALL, 0, tmp_path)
    first = load_synth("synth-aadb", 16, SMALL, 0, tmp_path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2] if damage == "truncate" else b"not a zip file")
    again = load_synth("synth-aadb", 16, SMALL, 0, tmp_path)
    _assert_same(again, first)
    with np.load(path) as npz:  # the cache was rewritten in full
        assert npz["train_images"].shape == (12, 16, 16, 3)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_attributes_track_quality_but_none_is_perfect() -> None:
    data = generate("synth-tad66k", 48, Sizes(2000, 1, 1, 0), seed=0)
    scores = data.train.scores
    luma = data.train.images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    luma /= 255
    smooth = ndimage.gaussian_filter(luma, (0, 1, 1))
    cues = {
        # Pixel noise: energy left after a light smoothing (low quality: more).
        "noise": (((luma - smooth) ** 2).mean(axis=(1, 2)), -1),
        # Sharpness: Laplacian variance of the smoothed image, noise suppressed (higher: better).
        "sharpness": (ndimage.laplace(smooth).var(axis=(1, 2)), 1),
        # Exposure: distance of mean luminance from mid-grey (low quality: larger).
        "exposure": (np.abs(luma.mean(axis=(1, 2)) - 0.5), -1),
    }
    for name, (stat, sign) in cues.items():
        rho = spearmanr(scores, stat).statistic
        assert 0.1 < sign * rho < 0.8, (name, rho)


def test_images_vary_with_nuisance() -> None:
    data = generate("synth-ava", 32, Sizes(64, 1, 1, 0), seed=0)
    images = data.train.images.astype(np.float32)
    assert len({img.tobytes() for img in data.train.images}) == 64
    mean_colours = images.mean(axis=(1, 2))
    assert mean_colours.std(axis=0).min() > 10  # hues and exposures differ from image to image


# Content fingerprints of the embedded benchmark as the profiles load it (bench.data.registry:
# data seed 0, cached by synth._generate_portably in synth.portable_env). They must be the same
# on every x86-64 machine. At these sizes the CPU-specific kernels change the bytes (measured
# with NumPy 2.4.6 and its OpenBLAS 0.3.31: smoke synth-ava is 7caf47d53c10 with NumPy's AVX2
# kernels and 973322622791 with AVX-512, cpu synth-ava 8d8d584e2814 and a84e664fa51b; with
# NumPy's baseline kernels but OpenBLAS's SkylakeX, Cooperlake or SapphireRapids kernels, smoke
# synth-ava is 9a9cfbba91f5 and cpu synth-ava 010e15d40042), so these fail when generation
# stops being portable (the two tests after this one). The 16 px images the goldens were taken
# at before came out the same under every kernel.
GOLDEN = {
    ("smoke", "synth-ava"): "e4e70a1db76b",
    ("smoke", "synth-aadb"): "34b59989789e",
    ("smoke", "synth-tad66k"): "f7c259cf5d43",
    ("smoke", "synth-para"): "8ae6f803e50a",
    ("cpu", "synth-ava"): "621abe66fed6",  # 2400/600/1000/2400 images at 48 px: ~6 s
}


@pytest.mark.parametrize(("profile", "preset"), sorted(GOLDEN))
def test_the_cached_benchmark_has_the_same_bytes_on_every_machine(
    tmp_path: Path, profile: str, preset: str
) -> None:
    data = load_dataset(preset, get_profile(profile), None, tmp_path)
    assert data.fingerprint == GOLDEN[profile, preset]


def _smoke_fingerprints(env: dict[str, str]) -> dict[str, str]:
    """The smoke presets' fingerprints, generated in a child process with ``env``."""
    code = (
        "from bench.data import synth; from bench.data.types import fingerprint; "
        "from bench.profiles import get_profile; p = get_profile('smoke'); "
        f"print(*(fingerprint(synth.generate(name, p.synth_img_size, p.synth_sizes, {DATA_SEED})) "
        f"for name in {PRESET_NAMES}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return dict(zip(PRESET_NAMES, out.stdout.split(), strict=True))


SMOKE_GOLDEN = {name: GOLDEN["smoke", name] for name in PRESET_NAMES}

# NumPy's runtime SIMD targets (ascending) that this CPU runs, e.g. X86_V3 (AVX2), X86_V4
# (AVX-512), AVX512_ICL; "baseline" is every one switched off, as synth.portable_env does.
LEVELS = ["baseline", *(target for target in __cpu_dispatch__ if __cpu_features__.get(target))]


@pytest.mark.parametrize("level", LEVELS)
def test_only_the_baseline_kernels_give_the_golden_bytes(level: str) -> None:
    """The smoke presets generated with OpenBLAS pinned as synth.portable_env pins it and NumPy
    dispatching its kernels up to `level` (the targets above it switched off): the golden bytes
    at "baseline", other bytes, and so a failing golden test, with the kernels of any level
    above it (NumPy's part of portable generation off)."""
    if level == "baseline":
        above = __cpu_dispatch__
    else:
        above = __cpu_dispatch__[__cpu_dispatch__.index(level) + 1 :]
    env = {k: v for k, v in synth.portable_env().items() if k != "NPY_DISABLE_CPU_FEATURES"}
    if above:
        env["NPY_DISABLE_CPU_FEATURES"] = ",".join(above)
    made = _smoke_fingerprints(env)
    if level == "baseline":
        assert made == SMOKE_GOLDEN
    else:  # measured: AVX2 changes three presets' bytes (not synth-tad66k's), AVX-512 all four
        assert made["synth-ava"] != SMOKE_GOLDEN["synth-ava"], made


@pytest.mark.skipif(
    "OPENBLAS_CORETYPE" not in synth.portable_env(), reason="OpenBLAS is pinned on x86-64 only"
)
@pytest.mark.parametrize("coretype", ["Prescott", "SkylakeX"])
def test_openblas_generic_kernels_give_the_golden_bytes(coretype: str) -> None:
    """NumPy's baseline kernels with OpenBLAS's generic SSE3 kernels (what portable_env pins):
    the golden bytes; with its AVX-512 gemv kernels (what OpenBLAS picks by itself on an AVX-512
    CPU): other bytes, so the golden test fails there when OpenBLAS is left to choose."""
    if coretype == "SkylakeX" and not __cpu_features__.get("AVX512F"):
        pytest.skip("this CPU cannot run OpenBLAS's AVX-512 kernels")
    env = synth.portable_env() | {"OPENBLAS_CORETYPE": coretype}
    made = _smoke_fingerprints(env)
    if coretype == "Prescott":
        assert made == SMOKE_GOLDEN
    else:
        assert made["synth-ava"] != SMOKE_GOLDEN["synth-ava"], made
