"""Purity and completeness of a selection by threshold, operating points, ROC AUC, calibration.

A reliability score ``s`` (any number that is larger for more reliable redshifts: a class
probability, the engine's redshift probability) selects the spectra with ``s >= t``. For true
labels ``y`` (1: success):

- purity(t) = successes among the selected / selected (the precision of the selection);
- completeness(t) = successes among the selected / all successes (its recall).

Curves are evaluated at every distinct score, so operating points are exact, not interpolated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Purity levels of the threshold table.
PURITY_LEVELS = (0.8, 0.9, 0.95)
#: The seed's operating point: purity > 0.8 with completeness > 0.45.
SEED_PURITY, SEED_COMPLETENESS = 0.8, 0.45


@dataclass
class PurityCompleteness:
    """Purity and completeness of the selections ``score >= threshold``.

    Attributes (shape (T,), thresholds decreasing)
    ----------------------------------------------
    threshold : the distinct scores, from the highest.
    purity : purity of ``score >= threshold``.
    completeness : completeness of ``score >= threshold``.
    selected : number of spectra selected.
    n_success : int, number of successes in the sample.
    """

    threshold: np.ndarray
    purity: np.ndarray
    completeness: np.ndarray
    selected: np.ndarray
    n_success: int

    def at_purity(self, target: float) -> tuple[float, float, float]:
        """The most complete selection of purity >= ``target``.

        Returns
        -------
        threshold, completeness, purity : float
            NaN threshold (completeness 0) when no threshold reaches the purity.
        """
        ok = np.flatnonzero(self.purity >= target)
        if ok.size == 0:
            return float("nan"), 0.0, float("nan")
        best = ok[np.argmax(self.completeness[ok])]
        return float(self.threshold[best]), float(self.completeness[best]), float(self.purity[best])

    def meets(self, purity: float = SEED_PURITY, completeness: float = SEED_COMPLETENESS) -> bool:
        """Whether some threshold gives purity > ``purity`` and completeness > ``completeness``."""
        return bool(np.any((self.purity > purity) & (self.completeness > completeness)))


def purity_completeness(score, success) -> PurityCompleteness:
    """Purity and completeness at every distinct score.

    Parameters
    ----------
    score : array_like, shape (N,)
        Reliability score; NaN scores are never selected.
    success : array_like of bool, shape (N,)
        True label: the redshift is a success.

    Returns
    -------
    PurityCompleteness
    """
    score = np.asarray(score, dtype=np.float64)
    success = np.asarray(success, dtype=bool)
    if score.shape != success.shape or score.ndim != 1:
        raise ValueError(f"score {score.shape} and success {success.shape} must be equal 1-D shapes")
    n_success = int(success.sum())
    keep = np.isfinite(score)
    s, y = score[keep], success[keep]
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # The selection "score >= t" ends at the last occurrence of each distinct score.
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if s.size else np.zeros(0, int)
    tp = np.cumsum(y)[last]
    selected = last + 1
    return PurityCompleteness(threshold=s[last], purity=tp / selected,
                              completeness=tp / max(n_success, 1), selected=selected, n_success=n_success)


def roc_auc(score, success) -> float:
    """Area under the ROC curve (probability that a success outscores a failure; ties count 1/2).

    NaN when the sample has a single class. NaN scores rank below every finite score.
    """
    from scipy.stats import rankdata

    score = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf)
    success = np.asarray(success, dtype=bool)
    n_pos, n_neg = int(success.sum()), int((~success).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[success].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(score, success) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of ``score >= t`` at every distinct score (from (0, 0))."""
    pc = purity_completeness(score, success)
    n_fail = int((~np.asarray(success, dtype=bool)).sum())
    fp = pc.selected - pc.purity * pc.selected
    fpr = np.r_[0.0, fp / max(n_fail, 1)]
    return fpr, np.r_[0.0, pc.completeness]


@dataclass
class ReliabilityDiagram:
    """Predicted probability against observed frequency, in bins of predicted probability.

    Attributes (shape (B,), empty bins removed)
    -------------------------------------------
    predicted : mean predicted probability in the bin.
    observed : fraction of positives in the bin.
    count : spectra in the bin.
    ece : float, expected calibration error sum(count |observed - predicted|) / N.
    """

    predicted: np.ndarray
    observed: np.ndarray
    count: np.ndarray
    ece: float


def reliability_diagram(prob, positive, n_bins: int = 10) -> ReliabilityDiagram:
    """Calibration of predicted probabilities of a class.

    Parameters
    ----------
    prob : array_like, shape (N,)
        Predicted probability of the class, in [0, 1].
    positive : array_like of bool, shape (N,)
        Whether each sample belongs to the class.
    n_bins : int
        Equal-width bins over [0, 1].
    """
    prob = np.asarray(prob, dtype=np.float64)
    positive = np.asarray(positive, dtype=np.float64)
    index = np.clip((prob * n_bins).astype(int), 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    filled = count > 0
    predicted = np.bincount(index, prob, n_bins)[filled] / count[filled]
    observed = np.bincount(index, positive, n_bins)[filled] / count[filled]
    count = count[filled]
    ece = float(np.sum(count * np.abs(observed - predicted)) / max(count.sum(), 1))
    return ReliabilityDiagram(predicted, observed, count, ece)


def selection(score, success, threshold: float) -> tuple[float, float]:
    """Purity and completeness of ``score >= threshold`` (purity NaN when nothing is selected)."""
    score = np.asarray(score, dtype=np.float64)
    success = np.asarray(success, dtype=bool)
    kept = score >= threshold  # NaN scores and a NaN threshold select nothing
    n_kept, tp = int(kept.sum()), int((kept & success).sum())
    return (tp / n_kept if n_kept else float("nan")), tp / max(int(success.sum()), 1)


def bootstrap_selection(scores: dict, success, thresholds: dict, n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict:
    """Purity and completeness of fixed thresholds, with paired bootstrap intervals.

    The thresholds are chosen elsewhere (on validation data); here they select the test spectra.
    Resampling the test spectra (the same draws for every method, so differences are paired)
    gives percentile intervals of each method's purity and completeness and of the completeness
    differences between methods.

    Parameters
    ----------
    scores : dict of str to array_like (N,)
        Method -> score of each test spectrum.
    success : array_like of bool (N,)
        True labels.
    thresholds : dict of str to float
        Method -> threshold (NaN: the method reached no threshold on the validation data).
    n_boot, seed, level : int, int, float
        Bootstrap resamples, their seed, and the interval's coverage.

    Returns
    -------
    dict
        ``{method: {"purity": (value, lo, hi), "completeness": (value, lo, hi)}}`` and, under
        ``"difference"``, ``{(a, b): (value, lo, hi)}`` of completeness(a) - completeness(b).
    """
    success = np.asarray(success, dtype=bool)
    methods = list(scores)
    kept = {m: np.asarray(scores[m], dtype=np.float64) >= thresholds[m] for m in methods}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(success), (n_boot, len(success)), dtype=np.int32)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def stats(sel, pos):
        n_kept = sel.sum(axis=-1)
        tp = (sel & pos).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return tp / np.where(n_kept > 0, n_kept, np.nan), tp / np.maximum(pos.sum(axis=-1), 1)

    out, boot_comp = {}, {}
    for m in methods:
        pur, comp = stats(kept[m], success)
        bp, bc = stats(kept[m][draws], success[draws])
        boot_comp[m] = bc
        out[m] = {"purity": (float(pur), *map(float, np.nanpercentile(bp, q))) if np.isfinite(bp).any()
                  else (float(pur), float("nan"), float("nan")),
                  "completeness": (float(comp), *map(float, np.percentile(bc, q)))}
    out["difference"] = {(a, b): (out[a]["completeness"][0] - out[b]["completeness"][0],
                                  *map(float, np.percentile(boot_comp[a] - boot_comp[b], q)))
                         for a in methods for b in methods if a != b}
    return out
