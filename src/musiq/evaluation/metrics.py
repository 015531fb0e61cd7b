"""Agreement between predictions and subjective labels: the usual IQA statistics.

* SRCC (Spearman), KRCC (Kendall tau-b): rank agreement, in [-1, 1];
* PLCC (Pearson): linear agreement, raw and after the standard 4-parameter logistic mapping
  of the predictions onto the labels (VQEG practice), in [-1, 1];
* RMSE: root mean squared error in label units, raw and after the logistic mapping;
* EMD: earth mover's distance between two distributions over ordered bins (AVA's 10 scores);
* bootstrap 95 % confidence intervals for all of them (resampling images with replacement).

Needs scipy (the ``eval`` extra; :func:`musiq.extras.install_hint`).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import MusiqError

try:
    from scipy import optimize, stats
except ImportError:  # pragma: no cover - depends on the installation
    from ..extras import needs
    raise MusiqError(needs("evaluation and training (scipy)", "eval")) from None


def srcc(pred: np.ndarray, label: np.ndarray) -> float:
    """Spearman rank correlation (ties get average ranks)."""
    return float(stats.spearmanr(pred, label).statistic)


def krcc(pred: np.ndarray, label: np.ndarray) -> float:
    """Kendall tau-b rank correlation."""
    return float(stats.kendalltau(pred, label).statistic)


def plcc(pred: np.ndarray, label: np.ndarray) -> float:
    """Pearson linear correlation."""
    pred, label = np.asarray(pred, np.float64), np.asarray(label, np.float64)
    if np.ptp(pred) == 0 or np.ptp(label) == 0:
        return float("nan")
    return float(stats.pearsonr(pred, label).statistic)


def rmse(pred: np.ndarray, label: np.ndarray) -> float:
    """Root mean squared error, in label units."""
    d = np.asarray(pred, np.float64) - np.asarray(label, np.float64)
    return float(np.sqrt(np.mean(d * d)))


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The 4-parameter logistic: ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``.

    ``b1``/``b2``: upper/lower asymptotes (label units), ``b3``: midpoint and ``b4``: slope
    scale (prediction units).
    """
    z = np.clip(-(np.asarray(x, np.float64) - b3) / max(abs(b4), 1e-12), -500.0, 500.0)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


@dataclass(frozen=True)
class LogisticFit:
    """A fitted monotonic mapping from predictions to labels.

    ``params``: (b1, b2, b3, b4) of :func:`logistic4`; ``kind``: ``logistic`` or ``linear``
    (the fallback when the logistic fit does not converge or the data are degenerate;
    params are then (slope, intercept, 0, 0)).
    """

    params: tuple[float, float, float, float]
    kind: str = "logistic"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.kind == "linear":
            return self.params[0] * x + self.params[1]
        return logistic4(x, *self.params)


def fit_logistic(pred: np.ndarray, label: np.ndarray) -> LogisticFit:
    """Least-squares fit of :func:`logistic4` (labels as a function of predictions)."""
    x, y = np.asarray(pred, np.float64), np.asarray(label, np.float64)
    if len(x) >= 4 and np.ptp(x) > 0 and np.ptp(y) > 0:
        # Start from a curve spanning the labels, centred on the predictions, with the sign
        # of the slope taken from the rank correlation (decreasing data fit with b1 < b2).
        up = not stats.spearmanr(x, y).statistic < 0
        b1, b2 = (y.max(), y.min()) if up else (y.min(), y.max())
        # Fit on standardised predictions: curve_fit's finite-difference steps are relative
        # to each parameter, so a midpoint near 0 would get no usable derivative.
        mu, sd = float(np.mean(x)), float(np.std(x))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p, _ = optimize.curve_fit(logistic4, (x - mu) / sd, y,
                                          p0=[b1, b2, 0.1, 1.0], maxfev=20000)
            if np.all(np.isfinite(p)):
                return LogisticFit((float(p[0]), float(p[1]), mu + sd * float(p[2]),
                                    sd * abs(float(p[3]))))
        except (RuntimeError, ValueError, optimize.OptimizeWarning):
            pass
    if np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        return LogisticFit((float(slope), float(intercept), 0.0, 0.0), "linear")
    return LogisticFit((0.0, float(np.mean(y)), 0.0, 0.0), "linear")


def emd(p: np.ndarray, q: np.ndarray, r: float = 1.0) -> np.ndarray:
    """Earth mover's distance between distributions over the same ordered, equally spaced bins.

    ``p``, ``q``: ``(..., K)``, each row normalised to sum 1 here. Returns ``(...)``:
    ``(mean_k |CDF_p(k) - CDF_q(k)|^r)^(1/r)`` (r = 1 or 2 in the literature; NIMA trains with 2).
    """
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
    d = np.abs(np.cumsum(p, axis=-1) - np.cumsum(q, axis=-1)) ** r
    return np.mean(d, axis=-1) ** (1.0 / r)


#: Statistics reported by :func:`agreement`, in report order.
STATISTICS = ("srcc", "plcc", "plcc_logistic", "krcc", "rmse", "rmse_logistic")


def _point(pred: np.ndarray, label: np.ndarray, fit: LogisticFit) -> dict[str, float]:
    mapped = fit(pred)
    return {"srcc": srcc(pred, label), "plcc": plcc(pred, label),
            "plcc_logistic": plcc(mapped, label), "krcc": krcc(pred, label),
            "rmse": rmse(pred, label), "rmse_logistic": rmse(mapped, label)}


def agreement(pred: np.ndarray, label: np.ndarray, *, bootstrap: int = 1000,
              confidence: float = 0.95, seed: int = 0) -> dict:
    """All statistics of :data:`STATISTICS`, their bootstrap intervals and the logistic fit.

    The logistic is fitted once on all data; each bootstrap resample (``bootstrap`` of them,
    0 for none) recomputes every statistic with that mapping. Intervals are percentile
    intervals at ``confidence``. Returns ``{"n", <stat>: value, "ci": {<stat>: [lo, hi]},
    "logistic": {"kind", "params"}}``; a statistic that is undefined (constant input) is NaN.
    """
    pred = np.asarray(pred, np.float64)
    label = np.asarray(label, np.float64)
    if pred.shape != label.shape or pred.ndim != 1:
        raise ValueError(f"pred and label must be 1-D of equal length, got {pred.shape} "
                         f"and {label.shape}")
    n = len(pred)
    if n < 2:
        raise ValueError(f"need at least 2 labelled predictions, got {n}")
    fit = fit_logistic(pred, label)
    out: dict = {"n": n, **_point(pred, label, fit)}
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        samples = {k: [] for k in STATISTICS}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant resamples of tiny sets give NaN
            for _ in range(bootstrap):
                idx = rng.integers(0, n, n)
                for k, v in _point(pred[idx], label[idx], fit).items():
                    samples[k].append(v)
        alpha = (1.0 - confidence) / 2.0
        out["ci"] = {k: _interval(v, alpha) for k, v in samples.items()}
        out["bootstrap"] = bootstrap
        out["confidence"] = confidence
    out["logistic"] = {"kind": fit.kind, "params": list(fit.params)}
    return out


def _interval(values: list[float], alpha: float) -> list[float]:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return [float("nan"), float("nan")]
    lo, hi = np.quantile(v, [alpha, 1.0 - alpha])
    return [float(lo), float(hi)]
