"""Figures drawn from stored results: Figure 1's score histograms (histograms.py), the long
tail's errors per model (tail_errors.py), Figure 5's tau1 x tau2 SRCC heatmap (tau_heatmap.py);
their files are written by files.py."""
