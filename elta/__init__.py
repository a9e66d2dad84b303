"""ELTA's three modules as plain tensor functions, usable from any training loop.

from elta import tfa, flsa, apds
feats, targets = tfa.mix(feats, targets, scores, n_pairs=12, tau1=0.2, tau2=4.0)
loss = emd(head(feats), targets) + w * flsa.alignment_loss(feats, scores)
"""

from elta import apds, flsa, tfa

__all__ = ["apds", "flsa", "tfa"]
