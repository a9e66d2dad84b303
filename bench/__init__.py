"""The benchmark, one sub-package per concern, lowest first: data (the embedded benchmark and
the real datasets' loaders), profiles (how large a run is), train (one training round and what
it is made of), run (grids of runs, stages, the results store, the runners), dev (developer
benchmarks and choices made on validation). docs/DESIGN.md draws the layers."""
