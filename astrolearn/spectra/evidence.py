"""Baseline: the class of best marginal evidence of the redshift engine's template fits (as Amazed).

For each class the engine (:class:`astrolearn.redshift.engine.RedshiftEngine`) fits its
template set over a redshift grid (non-negative least squares), and the evidence is
``log Z = log sum_z w(z) exp(-chi2(z) / 2)`` with ``w`` the trapezoid weights of a prior
uniform over the grid. The predicted class has the largest ``log Z``; ``softmax(log Z)`` gives
its (uncalibrated) probabilities. Template sets (:func:`class_engines`):

- GALAXY: the engine's default (kcorrect continua + emission-line groups), z 0.01-3 (NISP) or
  0-1.5 (optical);
- STAR: :data:`STAR_TYPES` of the stellar library (one spectrum per type), continuum only,
  v/c within +-0.0015 (450 km/s);
- QSO: three composites of :mod:`astrolearn.spectra.qso` (f_nu slopes -0.8, -0.44, -0.1,
  lines included, no IGM), continuum only, z 0.05-7.5 (NISP) or 0.05-5.5 (optical).

Amplitudes are free (no prior), so the evidence does not penalise the galaxy model's many line
groups; that is how the baseline is defined, and part of why it is weaker.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..redshift.pdf import ZGrid, logsumexp
from . import qso
from .stars import STAR_FILE, load_stars

QSO_FILE = Path(__file__).parent / "data" / "qso_templates.fits"
QSO_SLOPES = (-0.8, -0.44, -0.1)
#: Spectral types of the star template set (the first library spectrum whose name starts with each).
STAR_TYPES = ("A0V", "G2V", "M0", "M3", "M6", "M9", "L2", "L5", "L8", "T2", "T5", "T8")


def build_qso_file(out=QSO_FILE) -> Path:
    """Write the QSO composites (rest 600-26000 A, step 1e-3 in ln) used by the evidence baseline."""
    from astropy.io import fits

    loglam = np.arange(math.log(600.0), math.log(26000.0), 1e-3)
    wave = np.exp(loglam)[None, :]
    flux = []
    for a in QSO_SLOPES:
        cont = qso.continuum(wave, np.array([[a]]))
        lines = np.zeros_like(wave)
        for _, lam, ew, fwhm in qso.LINES:
            sig = fwhm / qso.C_KMS / 2.3548
            x = np.log(wave / lam) / sig
            lines += ew * qso.continuum(np.array([[lam]]), np.array([[a]])) * np.exp(-0.5 * x**2) / (
                np.sqrt(2 * np.pi) * sig * wave)
        f = (cont + lines)[0]
        flux.append(f / np.median(f[(wave[0] > 4000) & (wave[0] < 8000)]))
    hdu = fits.ImageHDU(np.array(flux, dtype=np.float32), name="FLUX")
    hdu.header["CRVAL1"] = (float(loglam[0]), "ln(rest vacuum wavelength/A) of pixel 0")
    hdu.header["CDELT1"] = (1e-3, "step in ln(wavelength)")
    for i, a in enumerate(QSO_SLOPES):
        hdu.header[f"TNAME{i}"] = f"qso_alpha{a:+.2f}"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out, overwrite=True)
    return Path(out)


def star_names() -> list[str]:
    names = load_stars().names
    return [next(n for n in names if n.startswith(t)) for t in STAR_TYPES if any(n.startswith(t) for n in names)]


def class_engines(wave, lsf_sigma, optical: bool, pixel_width=None):
    """One engine per class (GALAXY, STAR, QSO) on a wavelength grid (module doc)."""
    from ..redshift.engine import EngineConfig, RedshiftEngine

    gal = EngineConfig(grid=ZGrid(0.0, 1.5, 2e-4) if optical else ZGrid(0.01, 3.0, 2e-4), workers=1)
    star = EngineConfig(grid=ZGrid(-0.0015, 0.0015, 1e-4, "lin"), template_file=str(STAR_FILE),
                        templates=star_names(), lines=False, workers=1)
    q = EngineConfig(grid=ZGrid(0.05, 5.5 if optical else 7.5, 1e-3), template_file=str(QSO_FILE),
                     lines=False, workers=1)
    return [RedshiftEngine(wave, lsf_sigma, c, pixel_width=pixel_width) for c in (gal, star, q)]


def log_evidence(engine, flux, ivar) -> np.ndarray:
    """log Z (N,) of one engine's fits (uniform prior over its grid)."""
    res = engine.run(flux, ivar)
    w = engine.grid.weights
    logw = np.log(np.maximum(w / w.sum(), 1e-300))
    return logsumexp(-0.5 * np.nan_to_num(res.chi2.astype(np.float64), nan=np.inf) + logw, axis=1)


def evidence_probs(engines, flux, ivar) -> np.ndarray:
    """softmax over classes of log Z: (N, 3)."""
    lz = np.stack([log_evidence(e, flux, ivar) for e in engines], axis=1)
    lz = lz - lz.max(axis=1, keepdims=True)
    p = np.exp(lz)
    return p / p.sum(axis=1, keepdims=True)
