"""Redshift grids, log-PDF normalisation, priors and candidates (Amazed conventions).

- The grid is regular in ln(1 + z) (``sampling="log"``, Amazed's default) or in z (``"lin"``).
- The PDF is a density in z: ``sum_i w_i exp(log_pdf_i) = 1`` with trapezoid weights ``w_i``
  (the normalisation is a logsumexp, so tiny PDFs never underflow).
- Candidates are the highest local maxima of the log PDF, at least ``peak_separation``
  apart in ln(1 + z). For each, ``Dz`` comes from a quadratic fit of the log PDF over +-5
  grid points (then +-2), ``log p(z) ~ c - (z - z0)^2 / (2 Dz^2)``, with
  ``Dz = 1e-3 (1 + z)`` when the fit fails (non-negative curvature); Dz is thus the sigma of
  the Gaussian approximation of the peak (Amazed's ``CDeltaz::Compute``, fitting
  ``c x^2`` to the log PDF, returns sqrt(2) times this). The redshift
  probability of a candidate is the integral of the PDF over ``z +- 3 Dz``; where two windows
  overlap, both are cut at the middle of the overlap (Amazed ``SetIntegrationWindows``).
  Outer window edges are extended to the enclosing grid points, so a peak narrower than
  the grid step still integrates to its full mass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UserError

DZ_DEFAULT = 1e-3


@dataclass(frozen=True)
class ZGrid:
    """A redshift grid.

    Attributes
    ----------
    zmin, zmax : float
        Requested range; the last point is the largest grid point <= zmax.
    step : float
        Step in ln(1 + z) (``sampling="log"``) or in z (``"lin"``).
    sampling : str
        ``"log"`` or ``"lin"``.
    """

    zmin: float = 0.01
    zmax: float = 3.0
    step: float = 1e-4
    sampling: str = "log"

    def __post_init__(self):
        if self.sampling not in ("log", "lin"):
            raise UserError(f"--sampling must be 'log' or 'lin', not {self.sampling!r}")
        if not (self.step > 0 and math.isfinite(self.step)):
            raise UserError(f"--zstep must be > 0 (got {self.step})")
        if not (-1 < self.zmin < self.zmax) or not math.isfinite(self.zmax):
            raise UserError(f"--zrange must satisfy -1 < ZMIN < ZMAX (got {self.zmin} {self.zmax})")
        if self.size < 3:
            raise UserError(f"redshift grid of {self.size} points: widen --zrange or reduce --zstep")
        if self.size > 2_000_000:
            raise UserError(f"redshift grid of {self.size} points is too large: increase --zstep")

    @property
    def size(self) -> int:
        """Number of grid points."""
        if self.sampling == "log":
            span = math.log1p(self.zmax) - math.log1p(self.zmin)
        else:
            span = self.zmax - self.zmin
        return int(math.floor(span / self.step + 1e-9)) + 1

    @property
    def z(self) -> np.ndarray:
        """Grid redshifts, shape (Z,), float64."""
        k = np.arange(self.size, dtype=np.float64)
        if self.sampling == "log":
            return np.expm1(math.log1p(self.zmin) + k * self.step)
        return self.zmin + k * self.step

    @property
    def weights(self) -> np.ndarray:
        """Trapezoid integration weights in z, shape (Z,)."""
        return trapezoid_weights(self.z)

    def meta(self) -> dict:
        """Grid metadata stored with every PDF."""
        return {"zmin": float(self.zmin), "zmax": float(self.zmax), "zstep": float(self.step),
                "sampling": self.sampling, "nz": self.size}


def trapezoid_weights(z: np.ndarray) -> np.ndarray:
    """Weights w such that sum(w * f) is the trapezoid integral of f sampled at z."""
    z = np.asarray(z, dtype=np.float64)
    dz = np.diff(z)
    w = np.zeros_like(z)
    w[:-1] += dz / 2
    w[1:] += dz / 2
    return w


def logsumexp(a: np.ndarray, axis=-1) -> np.ndarray:
    """log(sum(exp(a))) along ``axis``, stable; -inf for all -inf rows."""
    a = np.asarray(a, dtype=np.float64)
    amax = np.max(a, axis=axis, keepdims=True)
    amax = np.where(np.isfinite(amax), amax, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - amax), axis=axis, keepdims=True)) + amax
    return np.squeeze(out, axis=axis)


def normalise_log_pdf(log_post: np.ndarray, grid: ZGrid | np.ndarray) -> np.ndarray:
    """Normalise unnormalised log posteriors so that the PDF integrates to 1 over the grid.

    Parameters
    ----------
    log_post : ndarray, shape (..., Z)
        log L + log prior (any additive constant).
    grid : ZGrid or ndarray of shape (Z,)
        The redshift grid.

    Returns
    -------
    ndarray, shape (..., Z)
        log PDF [log(1/unit z)].
    """
    z = grid.z if isinstance(grid, ZGrid) else np.asarray(grid)
    logw = np.log(trapezoid_weights(z))
    log_post = np.asarray(log_post, dtype=np.float64)
    # Shift to a maximum of 0 first: log L ~ -chi2 / 2 is ~ -1e4 for real spectra, where one
    # rounding of log_post + logw is ~1e-12 (absolute), i.e. a PDF that integrates to
    # 1 +- 1e-12 (redshift probabilities above 1). Near the peak the shift is exact.
    top = np.max(log_post, axis=-1, keepdims=True)
    shifted = log_post - np.where(np.isfinite(top), top, 0.0)
    return shifted - logsumexp(shifted + logw, axis=-1)[..., None]


def log_prior(grid: ZGrid, prior=None) -> np.ndarray:
    """log prior on the grid.

    Parameters
    ----------
    grid : ZGrid
    prior : None, ndarray of shape (Z,), or (z, density) pair of arrays
        ``None``: flat in z. A pair is interpolated linearly (density 0 outside, giving -inf).
    """
    z = grid.z
    if prior is None:
        return np.zeros_like(z)
    if isinstance(prior, tuple):
        zp, dens = (np.asarray(v, dtype=np.float64) for v in prior)
        dens = np.interp(z, zp, dens, left=0.0, right=0.0)
    else:
        dens = np.asarray(prior, dtype=np.float64)
        if dens.shape != z.shape:
            raise UserError(f"prior has {dens.shape} values for a grid of {z.size} redshifts")
    if np.any(dens < 0) or not np.any(dens > 0):
        raise UserError("the redshift prior must be >= 0 and positive somewhere on the grid")
    with np.errstate(divide="ignore"):
        return np.log(dens)


def read_prior(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a prior table: two columns ``z density`` (text, '#' comments, optional header)."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such prior file")
    try:
        data = np.genfromtxt(path, comments="#", delimiter=None, invalid_raise=True)
    except ValueError as exc:
        raise UserError(f"{path}: not a two-column 'z density' table ({exc})") from None
    data = np.atleast_2d(data)
    data = data[np.all(np.isfinite(data), axis=1)] if data.ndim == 2 else data
    if data.ndim != 2 or data.shape[1] < 2 or len(data) < 2:
        raise UserError(f"{path}: a prior needs >= 2 rows of 'z density'")
    order = np.argsort(data[:, 0])
    return data[order, 0], data[order, 1]


def find_peaks(log_pdf: np.ndarray, grid, n: int = 5, separation: float = 0.01) -> np.ndarray:
    """Indices of the ``n`` highest local maxima of each log PDF.

    Parameters
    ----------
    log_pdf : ndarray, shape (N, Z)
    grid : ZGrid or ndarray of shape (Z,)
    n : int
        Number of candidates.
    separation : float
        Minimum distance between two candidates in ln(1 + z).

    Returns
    -------
    ndarray of int, shape (N, n)
        Grid indices sorted by decreasing log PDF; -1 where fewer peaks exist.
    """
    from scipy.ndimage import maximum_filter1d

    log_pdf = np.asarray(log_pdf, dtype=np.float64)
    nspec, nz = log_pdf.shape
    lnz = np.log1p(grid.z if isinstance(grid, ZGrid) else np.asarray(grid, dtype=np.float64))
    dln = float(np.median(np.diff(lnz)))
    half = max(1, int(round(separation / dln / 2)))
    filled = np.where(np.isfinite(log_pdf), log_pdf, -np.inf)
    local = maximum_filter1d(filled, size=2 * half + 1, axis=1, mode="constant", cval=-np.inf)
    is_peak = (filled == local) & np.isfinite(filled)
    out = np.full((nspec, n), -1, dtype=np.int64)
    for i in range(nspec):
        idx = np.flatnonzero(is_peak[i])
        if idx.size == 0:
            continue
        # plateaus give several equal maxima: keep the first of each run
        idx = idx[np.concatenate(([True], np.diff(idx) > 1))]
        idx = idx[np.argsort(-filled[i, idx], kind="stable")]
        chosen: list[int] = []
        for j in idx:
            if all(abs(lnz[j] - lnz[k]) >= separation for k in chosen):
                chosen.append(int(j))
                if len(chosen) == n:
                    break
        out[i, : len(chosen)] = chosen
    return out


def quadratic_dz(log_pdf: np.ndarray, z: np.ndarray, index: int) -> float:
    """Dz from a quadratic fit of the log PDF around grid point ``index``.

    Fits ``log p = c0 + c1 (z - z0) + c2 (z - z0)^2`` over +-5 points (then +-2) and returns
    ``sqrt(-1 / (2 c2))``; ``DZ_DEFAULT * (1 + z0)`` when no fit has c2 < 0.
    """
    z0 = z[index]
    for half in (5, 2):
        lo, hi = max(index - half, 0), min(index + half, len(z) - 1)
        x = z[lo : hi + 1] - z0
        y = log_pdf[lo : hi + 1]
        ok = np.isfinite(y)
        if ok.sum() < 3:
            continue
        c2, _c1, _c0 = np.polyfit(x[ok], y[ok], 2)
        if c2 < 0 and np.isfinite(c2):
            return float(math.sqrt(-1.0 / (2.0 * c2)))
    return DZ_DEFAULT * (1.0 + z0)


def quadratic_dz_batch(log_pdf: np.ndarray, z: np.ndarray, rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Vectorised :func:`quadratic_dz` for peaks at (rows, index) of a (N, Z) log PDF array."""
    rows = np.asarray(rows, dtype=np.int64)
    index = np.asarray(index, dtype=np.int64)
    out = np.full(len(index), np.nan)
    nz = len(z)
    for half in (5, 2):
        todo = np.flatnonzero(np.isnan(out))
        if todo.size == 0:
            break
        offs = np.arange(-half, half + 1)
        j = index[todo, None] + offs[None, :]
        inside = (j >= 0) & (j < nz)
        j = np.clip(j, 0, nz - 1)
        x = z[j] - z[index[todo]][:, None]
        y = log_pdf[rows[todo, None], j]
        w = (inside & np.isfinite(y)).astype(np.float64)
        y = np.where(w > 0, y, 0.0)
        xs = x / np.maximum(np.abs(x).max(axis=1, keepdims=True), 1e-300)  # conditioning
        V = np.stack([np.ones_like(xs), xs, xs * xs], axis=2)  # (n, k, 3)
        G = np.einsum("nk,nki,nkj->nij", w, V, V)
        h = np.einsum("nk,nki,nk->ni", w, V, y)
        ok = (w.sum(axis=1) >= 3) & (np.abs(np.linalg.det(G)) > 1e-12)
        c = np.full((todo.size, 3), np.nan)
        if ok.any():
            c[ok] = np.linalg.solve(G[ok], h[ok][..., None])[..., 0]
        scale = np.maximum(np.abs(x).max(axis=1), 1e-300)
        c2 = c[:, 2] / scale**2
        good = np.isfinite(c2) & (c2 < 0)
        out[todo[good]] = np.sqrt(-1.0 / (2.0 * c2[good]))
    bad = np.isnan(out)
    out[bad] = DZ_DEFAULT * (1.0 + z[index[bad]])
    return out


def integration_windows(zc: np.ndarray, dz: np.ndarray, zlo: float, zhi: float) -> np.ndarray:
    """Integration windows ``z +- 3 Dz`` of candidates, split where they overlap.

    Parameters
    ----------
    zc, dz : ndarray, shape (C,)
        Candidate redshifts and Dz.
    zlo, zhi : float
        Grid limits (windows are clipped to them).

    Returns
    -------
    ndarray, shape (C, 2)
        [begin, end] of each window, in the input order. Sorting by redshift, when the
        window of a candidate overlaps the next one, both are cut at
        ``(max(z_low, begin_high) + min(z_high, end_low)) / 2`` (Amazed convention).
    """
    zc = np.asarray(zc, dtype=np.float64)
    dz = np.asarray(dz, dtype=np.float64)
    win = np.stack([np.maximum(zc - 3 * dz, zlo), np.minimum(zc + 3 * dz, zhi)], axis=1)
    order = np.argsort(zc, kind="stable")
    for a, b in zip(order[:-1], order[1:]):  # a below b
        if win[a, 1] > win[b, 0]:
            cut = (max(zc[a], win[b, 0]) + min(zc[b], win[a, 1])) / 2
            win[a, 1] = cut
            win[b, 0] = cut
    return win


def window_probability(log_pdf: np.ndarray, z: np.ndarray, begin: float, end: float,
                       snap_begin: str = "out", snap_end: str = "out") -> float:
    """Integral of the PDF between grid points enclosing [begin, end] (trapezoid rule).

    ``snap_*="out"`` extends the edge to the enclosing grid point; ``"near"`` takes the
    nearest grid point (used for edges shared with a neighbouring window, so that adjacent
    windows never count the same mass twice).
    """
    nz = len(z)

    def snap(v, mode, side):
        if mode == "near":
            return int(np.clip(np.argmin(np.abs(z - v)), 0, nz - 1))
        if side == "lo":
            return int(np.clip(np.searchsorted(z, v, side="right") - 1, 0, nz - 1))
        return int(np.clip(np.searchsorted(z, v, side="left"), 0, nz - 1))

    i0 = snap(begin, snap_begin, "lo")
    i1 = snap(end, snap_end, "hi")
    if i1 <= i0:
        return 0.0
    p = np.exp(log_pdf[i0 : i1 + 1])
    return float(np.sum((p[1:] + p[:-1]) * np.diff(z[i0 : i1 + 1])) / 2)


@dataclass
class Candidates:
    """Redshift candidates of a batch, ranked by redshift probability.

    Attributes (shape (N, C), NaN / -1 where fewer candidates exist)
    ----------------------------------------------------------------
    z : candidate redshifts (grid points of the log-PDF maxima).
    dz : Dz from the quadratic fit.
    proba : integrated redshift probability over the (split) window z +- 3 Dz.
    log_pdf : log PDF at the candidate.
    index : grid index.
    """

    z: np.ndarray
    dz: np.ndarray
    proba: np.ndarray
    log_pdf: np.ndarray
    index: np.ndarray


def candidates(log_pdf: np.ndarray, grid: ZGrid, n: int = 5, separation: float = 0.01) -> Candidates:
    """Find, measure and rank the redshift candidates of each log PDF (see module doc)."""
    log_pdf = np.atleast_2d(np.asarray(log_pdf, dtype=np.float64))
    z = grid.z
    peaks = find_peaks(log_pdf, grid, n=n, separation=separation)
    nspec = len(log_pdf)
    out = Candidates(*(np.full((nspec, n), np.nan) for _ in range(4)), np.full((nspec, n), -1, np.int64))
    pr, pc = np.nonzero(peaks >= 0)
    dz_all = np.full(peaks.shape, np.nan)
    if pr.size:
        dz_all[pr, pc] = quadratic_dz_batch(log_pdf, z, pr, peaks[pr, pc])
    for i in range(nspec):
        sel = peaks[i] >= 0
        idx = peaks[i][sel]
        if idx.size == 0:
            continue
        zc = z[idx]
        dz = dz_all[i][sel]
        win = integration_windows(zc, dz, z[0], z[-1])
        order = np.argsort(zc)
        shared_lo = np.zeros(len(idx), bool)
        shared_hi = np.zeros(len(idx), bool)
        for a, b in zip(order[:-1], order[1:]):
            if win[a, 1] == win[b, 0]:
                shared_hi[a] = shared_lo[b] = True
        proba = np.array([
            window_probability(log_pdf[i], z, win[k, 0], win[k, 1],
                               "near" if shared_lo[k] else "out", "near" if shared_hi[k] else "out")
            for k in range(len(idx))
        ])
        # a probability: a PDF normalised elsewhere (or in float32) may exceed 1 by rounding
        proba = np.clip(proba, 0.0, 1.0)
        rank = np.argsort(-proba, kind="stable")
        m = len(idx)
        out.z[i, :m] = zc[rank]
        out.dz[i, :m] = dz[rank]
        out.proba[i, :m] = proba[rank]
        out.log_pdf[i, :m] = log_pdf[i, idx[rank]]
        out.index[i, :m] = idx[rank]
    return out
