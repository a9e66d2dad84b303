"""Figures drawn from stored results: Figure 5's tau1 x tau2 SRCC heatmap (tau_heatmap.py)."""
