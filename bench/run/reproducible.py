"""The same numbers on every x86-64 machine, where that can be had.

Two machines of the same kind first part ways before training starts:

- the embedded benchmark: NumPy picks its float32 exp/sin/log kernels by CPU at run time
  (AVX2 here, AVX-512 elsewhere), and OpenBLAS its matrix-vector kernel (Haswell, Zen,
  SkylakeX, ...); their last bits change a few rendered pixels. The generator therefore runs
  with NumPy's baseline kernels and OpenBLAS's generic ones (bench/data/synth.py,
  `portable_env`; tests/test_synth.py keeps golden content hashes);
- the initial weights: torch's random-initialisation transforms (normal, truncated normal) are
  vectorised per CPU capability, so the same seed gives other weights under AVX-512 than under
  AVX2 (measured here: AVX2 against torch's baseline kernels differ in the weights' hash).

`pin_cpu_kernels` caps torch, oneDNN and MKL at AVX2 kernels for a run (set before torch is
loaded; the worker processes inherit it), unless the user has set those variables. AVX2 is what
every current x86-64 server has, and what the numbers in the README were computed with. Batch
order and the TFA draws come from torch's CPU generator, which is the same everywhere. What is
not pinned: the arithmetic order inside oneDNN's and MKL's kernels may still follow the cache
sizes of a CPU, so training can part ways later on another CPU model; the README says what was
checked.
"""

from __future__ import annotations

import os

PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own CPU kernels (init, element-wise, reductions)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # convolutions
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility (matmul)
}


def pin_cpu_kernels() -> dict[str, str]:
    """Set the variables of `PINNED` that the user has not set; return the effective ones.
    Effective only if torch has not been imported yet in this process (and always in the
    worker processes started afterwards)."""
    for name, value in PINNED.items():
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in PINNED}
