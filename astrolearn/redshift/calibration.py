"""Calibrated redshift probability: a monotone map of the engine's ``z_proba``.

The engine's ``z_proba`` (Amazed convention: the PDF mass within ``z_best +- 3 Dz``) is no
success probability: on simulated NISP spectra with ``z_proba`` 0.1-0.9 the observed success
rate (``|z - z_true| < 0.003 (1 + z_true)``) is 0.10-0.20 below it (benchmarks/RESULTS.md). ``z_proba_cal`` maps it
through

    z_proba_cal = sigmoid(b + f(L)),   L = logit(z_proba),

with ``f`` continuous and piecewise linear in the log-odds ``L``: slope ``s_0`` below the first
knot ``t_1``, ``s_k`` between ``t_k`` and ``t_(k+1)``, ``s_K`` above the last one. Slopes are
>= 0, so the map is non-decreasing (it never reorders spectra) and its values lie in (0, 1).
Without knots it is temperature scaling with a bias, ``sigmoid(b + L / T)`` (``T = 1 / s_0``).
The parameters minimise the binomial negative log-likelihood of success labels of simulated
spectra (convex in ``b`` and the slopes).

The map only reads ``z_proba``: the engine's log PDF, which the reliability CNN takes as input,
is unchanged. The shipped parameters (:data:`CALIBRATION_FILE`, with the seeds, sizes and commit
they were fitted on) are written by ``benchmarks/redshift_calibration.py --ship``.

Evaluation helpers: :func:`calibration_table` (reliability diagram of
:func:`~astrolearn.redshift.reliability.curves.reliability_diagram` with a binomial interval per
bin) and :func:`ece_interval` (bootstrap interval of the expected calibration error).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

#: The shipped calibration of ``z_proba`` (NISP simulations, default engine settings).
CALIBRATION_FILE = Path(__file__).parent / "data" / "zproba_calibration.json"
#: ``z_proba`` is clipped to [EPS, 1 - EPS] before the logit (the engine's values can be 0 or 1).
EPS = 1e-9
#: A bin of the reliability diagram is tested when it holds at least this many spectra ...
MIN_BIN_COUNT = 50
#: ... and meets the goal when its observed success rate is within this of its mean prediction.
BIN_TOLERANCE = 0.05


def logit(p) -> np.ndarray:
    """log(p / (1 - p)) of ``p`` clipped to [:data:`EPS`, 1 - :data:`EPS`]; NaN stays NaN."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def log_odds_features(z_proba, knots=()) -> np.ndarray:
    """Basis of the piecewise-linear map: ``f(L) = features @ slopes``.

    Parameters
    ----------
    z_proba : array_like, shape (N,)
        Redshift probabilities in [0, 1].
    knots : sequence of float, increasing
        Knots in log-odds.

    Returns
    -------
    ndarray, shape (N, len(knots) + 1)
        Column 0 is ``min(L, t_1)`` (``L`` without knots); column k is the part of ``L`` in
        [t_k, t_(k+1)] measured from ``t_k``.
    """
    lo = logit(z_proba)
    edges = np.r_[np.asarray(knots, dtype=np.float64), np.inf]
    cols = [np.minimum(lo, edges[0])]
    cols += [np.clip(lo, a, b) - a for a, b in zip(edges[:-1], edges[1:])]
    return np.stack(cols, axis=-1)


@dataclass(frozen=True)
class ProbaCalibration:
    """The map ``z_proba -> sigmoid(bias + f(logit z_proba))`` (see the module documentation).

    Attributes
    ----------
    bias : float
        ``b``, in log-odds.
    slopes : tuple of float
        ``s_0 .. s_K`` (>= 0), log-odds out per log-odds in.
    knots : tuple of float
        ``t_1 < .. < t_K``, in log-odds of ``z_proba``.
    meta : dict
        Where the parameters come from (seeds, sizes, commit, fit statistics).
    """

    bias: float
    slopes: tuple
    knots: tuple = ()
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        if len(self.slopes) != len(self.knots) + 1:
            raise UserError(f"calibration: {len(self.slopes)} slopes for {len(self.knots)} knots (need knots + 1)")
        if not all(np.isfinite(v) for v in (self.bias, *self.slopes, *self.knots)):
            raise UserError("calibration: parameters must be finite numbers")
        if any(s < 0 for s in self.slopes) or np.any(np.diff(self.knots) <= 0):
            raise UserError("calibration: slopes must be >= 0 and knots increasing")

    @property
    def temperature(self) -> float:
        """``1 / s_0``: the temperature of the map's lowest segment (of the whole map without knots)."""
        return float(1.0 / self.slopes[0]) if self.slopes[0] > 0 else float("inf")

    def __call__(self, z_proba) -> np.ndarray:
        """Calibrated probabilities, same shape as ``z_proba``; NaN where it is NaN."""
        z_proba = np.asarray(z_proba, dtype=np.float64)
        x = self.bias + log_odds_features(z_proba, self.knots) @ np.asarray(self.slopes, dtype=np.float64)
        return np.where(np.isnan(z_proba), np.nan, 1.0 / (1.0 + np.exp(-x)))

    def to_dict(self) -> dict:
        return {"bias": float(self.bias), "slopes": [float(s) for s in self.slopes],
                "knots": [float(t) for t in self.knots], **({"meta": self.meta} if self.meta else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "ProbaCalibration":
        return cls(float(d["bias"]), tuple(float(s) for s in d["slopes"]), tuple(float(t) for t in d.get("knots", ())),
                   dict(d.get("meta", {})))


def fit_proba_calibration(z_proba, success, knots=()) -> ProbaCalibration:
    """The map minimising the negative log-likelihood of ``success`` (see the module documentation).

    Parameters
    ----------
    z_proba : array_like, shape (N,)
        Redshift probabilities of the fit set (NaN rows are ignored).
    success : array_like of bool, shape (N,)
        Whether each redshift is a success.
    knots : sequence of float
        Knots in log-odds (none: temperature and bias).

    Returns
    -------
    ProbaCalibration
        Without ``meta``: the caller says where the data come from.
    """
    from scipy.optimize import minimize

    z_proba = np.asarray(z_proba, dtype=np.float64)
    y = np.asarray(success, dtype=np.float64)
    keep = np.isfinite(z_proba)
    x = np.c_[np.ones(int(keep.sum())), log_odds_features(z_proba[keep], knots)]
    y = y[keep]
    if not (0 < y.sum() < len(y)):
        raise UserError("calibration fit needs both successes and failures")

    def objective(theta):
        z = x @ theta
        value = np.mean(np.logaddexp(0.0, z) - y * z)
        return value, x.T @ (0.5 * (1 + np.tanh(z / 2)) - y) / len(y)  # sigmoid without overflow

    res = minimize(objective, np.r_[0.0, np.ones(x.shape[1] - 1)], jac=True, method="L-BFGS-B",
                   bounds=[(None, None)] + [(0.0, None)] * (x.shape[1] - 1))
    return ProbaCalibration(float(res.x[0]), tuple(float(s) for s in res.x[1:]), tuple(float(t) for t in knots))


def load_calibration(path=None) -> ProbaCalibration:
    """Read a calibration JSON (default: the shipped :data:`CALIBRATION_FILE`)."""
    path = Path(path) if path is not None else CALIBRATION_FILE
    try:
        return ProbaCalibration.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise UserError(f"{path}: no such calibration file") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a z_proba calibration ({exc.__class__.__name__}: {exc})") from None


def calibration_table(prob, success, n_bins: int = 10) -> list[dict]:
    """Reliability diagram rows with a 95 % interval of the observed rate.

    Parameters
    ----------
    prob : array_like, shape (N,)
        Predicted probabilities in [0, 1] (NaN rows are dropped).
    success : array_like of bool, shape (N,)
    n_bins : int
        Equal-width bins over [0, 1].

    Returns
    -------
    list of dict
        Non-empty bins: ``lo``, ``hi`` (bin edges), ``n``, ``predicted`` (mean), ``observed``
        (success rate), ``obs_lo``, ``obs_hi`` (95 % Wilson interval of the rate), ``tested``
        (n >= :data:`MIN_BIN_COUNT`) and ``within`` (|observed - predicted| <= :data:`BIN_TOLERANCE`).
    """
    from .reliability.curves import reliability_diagram

    prob = np.asarray(prob, dtype=np.float64)
    keep = np.isfinite(prob)
    d = reliability_diagram(prob[keep], np.asarray(success, bool)[keep], n_bins)
    # A bin's mean prediction lies inside it, which names the bin.
    index = np.clip(np.floor(d.predicted * n_bins).astype(int), 0, n_bins - 1)
    rows = []
    for i, p, o, n in zip(index, d.predicted, d.observed, d.count):
        lo, hi = wilson_interval(o, n)
        rows.append({"lo": i / n_bins, "hi": (i + 1) / n_bins, "n": int(n), "predicted": float(p),
                     "observed": float(o), "obs_lo": lo, "obs_hi": hi, "tested": bool(n >= MIN_BIN_COUNT),
                     "within": bool(abs(o - p) <= BIN_TOLERANCE)})
    return rows


def wilson_interval(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial rate observed over ``n`` trials (95 % for z = 1.96)."""
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return float(centre - half), float(centre + half)


def ece_interval(prob, success, n_bins: int = 10, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Expected calibration error and its 95 % bootstrap interval (spectra resampled with replacement).

    Returns
    -------
    ece, lo, hi : float
    """
    from .reliability.curves import reliability_diagram

    prob = np.asarray(prob, dtype=np.float64)
    keep = np.isfinite(prob)
    prob, success = prob[keep], np.asarray(success, bool)[keep]
    rng = np.random.default_rng(seed)
    boot = [reliability_diagram(prob[i], success[i], n_bins).ece
            for i in (rng.integers(0, len(prob), len(prob)) for _ in range(n_boot))]
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return reliability_diagram(prob, success, n_bins).ece, float(lo), float(hi)
