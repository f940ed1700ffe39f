"""Normalising-flow layers of the VITS model: the non-causal WaveNet stack (wavenet.py) and the
volume-preserving residual affine couplings built on it (coupling.py)."""
