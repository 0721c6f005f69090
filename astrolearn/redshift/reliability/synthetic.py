"""Toy redshift PDFs with a known truth, for tests and throughput measurements (not physics).

Each log PDF is the upper envelope of Gaussian peaks in ln(1 + z), heights in units of
delta chi2 / 2: the true peak (height growing with the signal-to-noise ratio), a line-alias peak
at ``(1 + z_true) r - 1`` for a ratio ``r`` of :func:`astrolearn.redshift.lines.alias_ratios`, and
noise peaks at random redshifts, over a noisy floor. The highest peak gives ``z_best``, so low
S/N spectra fail, through aliases or noise, as template-fitting redshifts do. It is what the
classifier sees, without the cost of simulating spectra and running the engine.
"""

from __future__ import annotations

import numpy as np

from ..lines import alias_ratios
from ..pdf import ZGrid, candidates, normalise_log_pdf


def toy_pdfs(n: int, grid: ZGrid | None = None, seed: int = 0, n_candidates: int = 5) -> dict[str, np.ndarray]:
    """Draw ``n`` toy PDFs and their truth.

    Parameters
    ----------
    n : int
        Number of PDFs.
    grid : ZGrid, optional
        Redshift grid (default: the engine's default grid).
    seed : int
        Random seed.
    n_candidates : int
        Candidates measured per PDF (as the engine does).

    Returns
    -------
    dict of str to ndarray
        ``log_pdf`` (n, Z) float32, ``z_true``, ``snr``, ``z`` (best candidate), ``z_err``,
        ``z_proba``, ``candidates`` (n, n_candidates) redshifts (NaN where fewer).
    """
    grid = grid or ZGrid()
    rng = np.random.default_rng(seed)
    u = np.log1p(grid.z)
    z_true = rng.uniform(0.5, 2.2, n)
    snr = np.exp(rng.uniform(np.log(1.0), np.log(15.0), n))
    ratios = np.array(list(alias_ratios().values()))
    sigma = rng.uniform(5e-4, 1.5e-3, n)  # peak width in ln(1 + z)
    # Peak centres (ln(1 + z)) and heights (log PDF units): truth, alias, 3 noise peaks.
    centres = np.column_stack([
        np.log1p(z_true),
        np.log1p(z_true) + np.log(rng.choice(ratios, n)),
        rng.uniform(u[0], u[-1], (n, 3)),
    ])
    heights = np.column_stack([
        0.5 * snr**2,
        0.5 * snr**2 * rng.uniform(0.2, 1.1, n),
        rng.exponential(6.0, (n, 3)),
    ])
    log_post = rng.normal(0.0, 0.3, (n, u.size))
    for k in range(centres.shape[1]):
        peak = heights[:, k : k + 1] - 0.5 * ((u[None, :] - centres[:, k : k + 1]) / sigma[:, None]) ** 2
        log_post = np.maximum(log_post, peak)
    log_pdf = normalise_log_pdf(log_post, grid.z)
    cand = candidates(log_pdf, grid, n=n_candidates)
    return {"log_pdf": log_pdf.astype(np.float32), "z_true": z_true, "snr": snr, "z": cand.z[:, 0],
            "z_err": cand.dz[:, 0], "z_proba": cand.proba[:, 0], "candidates": cand.z}
