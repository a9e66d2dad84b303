"""How long loading AVA takes at its real size: a cold load (every image header checked) and a
warm one (the cached listing, bench/data/listing.py).

    python -m bench.dev.listing_perf [--rows 255000] [--folder /tmp/ava-scale]

Writes an AVA folder in the official AVA.txt form (`--rows` rows of vote counts and challenge
ids, 20,000 of them listed in aesthetics_image_lists/generic_test.jpgl) with a tiny JPEG per
row (8 x 6 px: a header is a header), unless the folder already has it, then times
`bench.data.registry.load_dataset("ava", ...)` cold (an empty cache) and warm.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.data.registry import load_dataset
from bench.profiles import get_profile

TEST_IDS = 20_000


def write_ava(folder: Path, rows: int, seed: int = 0) -> None:
    """AVA.txt, the generic test list and one tiny JPEG per row, under `folder`/AVA."""
    ava = folder / "AVA"
    (ava / "images").mkdir(parents=True, exist_ok=True)
    (ava / "aesthetics_image_lists").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    votes = rng.poisson(20, size=(rows, 10))
    challenges = rng.integers(1, 1400, size=rows)
    ids = np.arange(100_000, 100_000 + rows)
    lines = [
        f"{k + 1} {image_id} {' '.join(map(str, v))} 0 0 {c}"
        for k, (image_id, v, c) in enumerate(zip(ids, votes, challenges, strict=True))
    ]
    (ava / "AVA.txt").write_text("\n".join(lines) + "\n")
    test = rng.choice(ids, size=min(TEST_IDS, rows // 10), replace=False)
    (ava / "aesthetics_image_lists" / "generic_test.jpgl").write_text(
        "\n".join(map(str, test)) + "\n"
    )
    tiny = Image.new("RGB", (8, 6), (120, 90, 60))
    for image_id in ids:
        tiny.save(ava / "images" / f"{image_id}.jpg", quality=50)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dev.listing_perf", description=__doc__)
    parser.add_argument("--rows", type=int, default=255_000)
    parser.add_argument("--folder", type=Path, help="where to write the AVA folder (kept)")
    args = parser.parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="ava-scale-"))
    if not (folder / "AVA" / "AVA.txt").exists():
        start = time.perf_counter()
        write_ava(folder, args.rows)
        print(f"wrote {args.rows:,} rows and images in {time.perf_counter() - start:.0f} s")
    cache = Path(tempfile.mkdtemp(prefix="ava-cache-"))
    profile = get_profile("cpu")
    try:
        for kind in ("cold (every header checked)", "warm (the cached listing)"):
            start = time.perf_counter()
            data = load_dataset("ava", profile, folder, cache)
            seconds = time.perf_counter() - start
            print(f"{kind}: {seconds:.1f} s, {len(data.train):,} train / {len(data.val):,} val "
                  f"/ {len(data.test):,} test images")  # fmt: skip
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
