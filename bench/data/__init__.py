"""Datasets: the embedded long-tailed benchmark and loaders for the real datasets."""
