"""Figures (the Figure 5 tau1 x tau2 SRCC heatmap lands with the Table 5 / Figure 5 issue)."""
