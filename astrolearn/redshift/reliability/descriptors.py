"""The zPDF descriptors of Jamal et al. (2018, A&A 611, A53), for the gradient-boosting baseline.

Jamal et al. describe a redshift PDF by a handful of numbers (its moments, the height of its
mode, the size of its 95 % credible region, the mass near the mode, how the two main peaks
compare, how many significant peaks there are) and classify the reliability from them. The
13 descriptors computed here follow that list; where the paper leaves a choice, the one made is:

===================  ==========================================================================
name                 definition (p: PDF density in z, normalised on the grid; z_1, z_2: the two
                     highest peaks, found as the engine finds candidates)
===================  ==========================================================================
mean                 E[z]
std                  sqrt(Var[z])
skewness             E[(z - mean)^3] / std^3
kurtosis             E[(z - mean)^4] / std^4 - 3 (excess kurtosis)
z_map                z_1, the mode
peak_height          p(z_1) [1 / unit z]
cr95_width           total length in z of the 95 % highest-density credible region
cr95_mass            mass of the part of that region that contains z_1 (= 0.95 for a single
                     peak; less when other peaks take part of the 95 %)
mass_peak            mass within z_1 +- 0.001
peak_distance        |z_2 - z_1| (0 with a single peak)
peak_ratio           p(z_2) / p(z_1) (0 with a single peak)
n_peaks              number of peaks higher than 1 % of p(z_1) (at most :data:`MAX_PEAKS`)
mass_second          mass within z_2 +- 0.001 (0 with a single peak)
===================  ==========================================================================

z_map and mass_second are not in the paper's list of 11 quantities above; they complete it to 13
because the labels depend on where the redshift is (the Euclid window) and because the mass,
not only the height, of the rival peak decides a confusion.
"""

from __future__ import annotations

import numpy as np

from .. import pdf as pdfmod

DESCRIPTOR_NAMES = ("mean", "std", "skewness", "kurtosis", "z_map", "peak_height", "cr95_width", "cr95_mass",
                    "mass_peak", "peak_distance", "peak_ratio", "n_peaks", "mass_second")
#: Half-width in z of the windows of ``mass_peak`` and ``mass_second``.
PEAK_HALF_WIDTH = 0.001
#: Credible level of the highest-density region.
CREDIBLE = 0.95
#: A peak is significant when higher than this fraction of the mode.
SIGNIFICANT = 0.01
#: Peaks counted at most.
MAX_PEAKS = 10


def zpdf_descriptors(log_pdf, grid: pdfmod.ZGrid, separation: float = 0.01, chunk: int = 256) -> np.ndarray:
    """The 13 descriptors of each PDF (see the module documentation).

    Parameters
    ----------
    log_pdf : array_like, shape (N, Z)
        Normalised log PDFs on ``grid`` (as the engine writes them). Rows without any finite
        value give NaN descriptors.
    grid : ZGrid
        Their redshift grid.
    separation : float
        Minimum distance between two peaks in ln(1 + z) (the engine's candidate separation).
    chunk : int
        PDFs processed together (bounds the memory to a few (chunk, Z) float64 arrays).

    Returns
    -------
    ndarray, shape (N, 13)
        Columns in the order of :data:`DESCRIPTOR_NAMES`.
    """
    n = len(log_pdf)
    out = np.empty((n, len(DESCRIPTOR_NAMES)))
    for i0 in range(0, n, chunk):
        out[i0 : i0 + chunk] = _descriptors(np.asarray(log_pdf[i0 : i0 + chunk], dtype=np.float64), grid,
                                            separation)
    return out


def _descriptors(log_pdf: np.ndarray, grid: pdfmod.ZGrid, separation: float) -> np.ndarray:
    z, w = grid.z, grid.weights
    rows = np.arange(len(log_pdf))
    finite = np.isfinite(log_pdf)
    top = np.max(np.where(finite, log_pdf, -np.inf), axis=1)
    valid = np.isfinite(top)
    # Renormalised here so that the descriptors do not depend on how exactly the input was
    # normalised (float32 storage, another integration rule).
    logp = np.where(finite, log_pdf, -np.inf) - np.where(valid, top, 0.0)[:, None]
    p = np.exp(logp)
    p /= np.maximum((p * w).sum(axis=1), 1e-300)[:, None]
    mass = p * w

    mean = mass @ z
    d = z[None, :] - mean[:, None]
    var = (mass * d**2).sum(axis=1)
    std = np.sqrt(var)
    with np.errstate(invalid="ignore", divide="ignore"):
        skew = (mass * d**3).sum(axis=1) / std**3
        kurt = (mass * d**4).sum(axis=1) / var**2 - 3.0

    # Highest-density region: the density level above which the mass reaches CREDIBLE.
    order = np.argsort(-p, axis=1, kind="stable")
    cum = np.cumsum(np.take_along_axis(mass, order, axis=1), axis=1)
    k = np.minimum((cum < CREDIBLE).sum(axis=1), p.shape[1] - 1)
    level = p[rows, order[rows, k]]
    inside = p >= level[:, None]
    width = (inside * w).sum(axis=1)
    # The part of the region containing the mode: points of the same run of "inside" points.
    imap = np.argmax(p, axis=1)
    run = np.cumsum(~inside, axis=1)
    main = inside & (run == run[rows, imap][:, None])
    cr_mass = (mass * main).sum(axis=1)

    peaks = pdfmod.find_peaks(np.where(valid[:, None], logp, 0.0), grid, n=MAX_PEAKS, separation=separation)
    height = np.where(peaks >= 0, p[rows[:, None], np.maximum(peaks, 0)], 0.0)
    z_map = z[np.maximum(peaks[:, 0], 0)]
    p1 = height[:, 0]
    has2 = peaks[:, 1] >= 0
    z2 = np.where(has2, z[np.maximum(peaks[:, 1], 0)], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(has2, height[:, 1] / p1, 0.0)
    n_peaks = (height >= SIGNIFICANT * p1[:, None]).sum(axis=1) * (peaks[:, 0] >= 0)

    # Cumulative distribution (trapezoid), interpolated linearly at the window edges: the
    # windows are a few grid cells wide, so counting whole cells would be off by tens of %.
    cdf = np.concatenate([np.zeros((len(p), 1)), np.cumsum(0.5 * (p[:, 1:] + p[:, :-1]) * np.diff(z), axis=1)], axis=1)

    def mass_near(zc):
        return _interp_rows(cdf, z, zc + PEAK_HALF_WIDTH) - _interp_rows(cdf, z, zc - PEAK_HALF_WIDTH)

    mass_peak = mass_near(z_map)
    mass_second = np.where(has2, mass_near(np.nan_to_num(z2)), 0.0)
    distance = np.where(has2, np.abs(z2 - z_map), 0.0)
    out = np.stack([mean, std, skew, kurt, z_map, p1, width, cr_mass, mass_peak, distance, ratio,
                    n_peaks, mass_second], axis=1)
    out[~valid] = np.nan
    return out


def _interp_rows(values: np.ndarray, x: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Row i of ``values`` (sampled at ``x``) interpolated linearly at ``at[i]`` (clipped to ``x``)."""
    at = np.clip(at, x[0], x[-1])
    j = np.clip(np.searchsorted(x, at, side="right") - 1, 0, len(x) - 2)
    t = (at - x[j]) / (x[j + 1] - x[j])
    rows = np.arange(len(values))
    return values[rows, j] * (1 - t) + values[rows, j + 1] * t
