"""Linear-probe initialisation of a new MOS head ("LP-FT": fit the head first, then fine-tune).

A zero head trained by SGD on top of a network is slow to converge: the CLS features share a
large common component, so the problem is badly conditioned. Solving it in closed form first
(ridge regression on standardised features, the ridge strength picked by exact leave-one-out
error) gives fine-tuning a sensible starting point and keeps early gradients from distorting
the pretrained features (Kumar et al., ICLR 2022).
"""
from __future__ import annotations

import numpy as np

#: Ridge strengths tried, relative to standardised features.
LAMBDAS = np.logspace(-2, 4, 13)


def fit_ridge(features: np.ndarray, targets: np.ndarray,
              lambdas: np.ndarray = LAMBDAS) -> tuple[np.ndarray, float, float]:
    """Least squares with an L2 penalty: ``targets ~ features @ w + b``.

    ``features`` ``(n, d)``, ``targets`` ``(n,)``. Returns ``(w (d,), b, lambda)`` in the
    original feature units; lambda is the one with the smallest leave-one-out squared error
    (computed exactly from the hat matrix, no refits).
    """
    x = np.asarray(features, np.float64)
    y = np.asarray(targets, np.float64)
    mu, sd = x.mean(0), x.std(0) + 1e-8
    xs = (x - mu) / sd
    ym = y.mean()
    yc = y - ym
    u, s, vt = np.linalg.svd(xs, full_matrices=False)
    uy = u.T @ yc
    best = (np.inf, lambdas[0])
    for lam in lambdas:
        shrink = s * s / (s * s + lam)
        fitted = u @ (shrink * uy)
        # leverage of each point; + 1/n for the fitted mean (intercept)
        lev = (u * u) @ shrink + 1.0 / len(y)
        loo = (yc - fitted) / np.maximum(1.0 - lev, 1e-6)
        err = float(np.mean(loo * loo))
        if err < best[0]:
            best = (err, lam)
    lam = best[1]
    w_std = vt.T @ (s / (s * s + lam) * uy)
    w = w_std / sd
    return w, float(ym - mu @ w), float(lam)
