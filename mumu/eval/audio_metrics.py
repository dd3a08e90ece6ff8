"""Set and pair metrics of generated music: Fréchet distance (FAD), KL of tagger class distributions, cosine.

FAD (Kilgour et al., 2019): fit a Gaussian to each embedding set and take
    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)),
with the matrix square root from scipy.linalg.sqrtm as the reference implementations (google-research FAD,
pytorch-fid, fadtk) compute it, including pytorch-fid's fallback: when the product is singular the diagonals get
an offset of 1e-6 and the imaginary round-off of the root is dropped.

KL (the softmax variant of AudioLDM's audioldm_eval, which M2UGen-era papers follow): for each (reference,
generated) pair the tagger's class logits become softmax distributions; `kl_softmax` is the mean over pairs of
KL(reference || generated).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

EPS = 1e-6


def gaussian(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, rowvar=False) covariance of an (n, d) embedding set; n >= 2."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need an (n >= 2, d) embedding set for a Fréchet distance, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Fréchet distance between two Gaussians (see the module docstring)."""
    diff = mu_a - mu_b
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        offset = np.eye(cov_a.shape[0]) * EPS
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root))


def fad(reference: np.ndarray, generated: np.ndarray) -> float:
    """Fréchet Audio Distance between a reference and a generated embedding set (rows are embeddings)."""
    if np.shape(reference)[1:] != np.shape(generated)[1:]:
        raise ValueError(f"embedding widths differ: {np.shape(reference)} vs {np.shape(generated)}")
    return frechet_distance(*gaussian(reference), *gaussian(generated))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def kl_divergences(reference_logits: np.ndarray, generated_logits: np.ndarray) -> dict[str, float]:
    """{'kl_softmax'}: mean over pairs of KL(reference || generated) (see the module docstring)."""
    ref = np.asarray(reference_logits, dtype=np.float64)
    gen = np.asarray(generated_logits, dtype=np.float64)
    if ref.shape != gen.shape or ref.ndim != 2:
        raise ValueError(f"need paired (n, classes) logits, got {ref.shape} and {gen.shape}")
    p, q = _softmax(ref), _softmax(gen)
    softmax = np.sum(p * (np.log(p + EPS) - np.log(q + EPS)), axis=-1)
    return {"kl_softmax": float(softmax.mean())}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
