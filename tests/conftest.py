"""Every test process pins the CPU kernels before torch runs anything (bench/run/reproducible.py),
as run_all.py does: numbers computed in this process then match those of the runs it starts."""

from bench.run.reproducible import pin_cpu_kernels

pin_cpu_kernels()
