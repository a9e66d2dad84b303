"""The benchmark: data, metrics, losses, training, planning, the runner and the results store."""
