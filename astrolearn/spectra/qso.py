"""Quasar spectra: the Vanden Berk et al. (2001) composite as a parametric model, plus the IGM.

Rest frame (vacuum Angstrom), f_lambda:

- continuum: a broken power law f_nu ~ nu^alpha, alpha = -0.44 blueward of 5000 A and -2.45
  redward (Vanden Berk et al. 2001, their fits to the SDSS composite; the red slope is the
  host galaxy and hot dust), each quasar's blue slope drawn around -0.44 (scatter 0.3);
- broad and narrow emission lines of :data:`LINES`: Gaussians of the composite's rest
  equivalent widths (their Table 2, blends summed; the Paschen and HeI 10830 lines, which the
  optical composite does not reach, from the near-infrared composite of Glikman et al. 2006),
  each quasar's line strengths scaled together by a log-normal factor (0.2 dex) and each line
  by another (0.1 dex), widths drawn around the listed FWHM (+-30 %);
- intergalactic absorption blueward of Lyalpha: effective optical depth
  tau_eff(z_abs) = 0.0018 (1 + z_abs)^3.92 (Faucher-Giguere et al. 2008) for Lyalpha and
  0.16 of it for Lybeta, fluctuating from pixel to pixel with a log-normal factor of mean 1
  (a forest of unresolved lines), and no flux blueward of the Lyman limit (912 A).

Not modelled: the Fe II pseudo-continuum, the Balmer continuum, broad absorption lines. The
check against the DESI quasar eigenspectra is in ``tests/test_spectra_simulate.py``.
"""

from __future__ import annotations

import numpy as np

C_KMS = 299792.458
LYA, LYB, LYMAN_LIMIT = 1215.67, 1025.72, 911.75
#: (name, rest vacuum wavelength [A], rest equivalent width [A], FWHM [km/s]).
LINES = (
    ("Lybeta+OVI", 1029.0, 9.1, 5000.0),
    ("Lyalpha", 1215.67, 92.9, 4500.0),
    ("NV", 1240.14, 8.0, 3500.0),
    ("OI", 1304.35, 2.0, 3000.0),
    ("CII", 1335.31, 0.6, 2500.0),
    ("SiIV+OIV]", 1398.33, 8.1, 5000.0),
    ("CIV", 1549.06, 23.8, 5000.0),
    ("HeII", 1640.42, 1.0, 3000.0),
    ("CIII]", 1908.73, 21.2, 5500.0),
    ("MgII", 2798.75, 32.3, 4500.0),
    ("[NeV]", 3426.84, 1.2, 800.0),
    ("[OII]", 3728.48, 1.6, 600.0),
    ("[NeIII]", 3869.85, 1.4, 700.0),
    ("Hdelta", 4102.89, 5.1, 3500.0),
    ("Hgamma", 4341.68, 12.6, 3500.0),
    ("Hbeta", 4862.68, 46.2, 4500.0),
    ("[OIII]4960", 4960.30, 3.5, 600.0),
    ("[OIII]5008", 5008.24, 13.2, 600.0),
    ("HeI5877", 5877.29, 6.1, 3500.0),
    ("Halpha", 6564.61, 194.5, 3500.0),
    ("Pagamma", 10941.1, 25.0, 3000.0),
    ("HeI10833", 10833.2, 30.0, 3000.0),
    ("Pabeta", 12821.6, 60.0, 3000.0),
    ("Paalpha", 18756.1, 110.0, 3000.0),
)
ALPHA_BLUE, ALPHA_RED, BREAK = -0.44, -2.45, 5000.0


def continuum(rest_wave, alpha_blue) -> np.ndarray:
    """Broken power-law f_lambda (1 at 3000 A), continuous at :data:`BREAK`.

    Parameters
    ----------
    rest_wave : ndarray (N, M)
        Rest wavelengths [Angstrom].
    alpha_blue : ndarray (N, 1)
        f_nu slope blueward of the break.
    """
    blue = (rest_wave / 3000.0) ** (-2.0 - alpha_blue)
    at_break = (BREAK / 3000.0) ** (-2.0 - alpha_blue)
    red = at_break * (rest_wave / BREAK) ** (-2.0 - ALPHA_RED)
    return np.where(rest_wave < BREAK, blue, red)


def igm_transmission(obs_wave, z, rng: np.random.Generator, scatter: float = 0.8) -> np.ndarray:
    """Mean-flux-calibrated Lyman-series transmission of the IGM (see the module documentation).

    Parameters
    ----------
    obs_wave : ndarray (M,)
        Observed wavelengths [Angstrom].
    z : ndarray (N,)
        Quasar redshifts.
    rng : numpy.random.Generator
        For the pixel-to-pixel fluctuations (log-normal, ``scatter`` in ln).
    """
    zc = z[:, None]
    rest = obs_wave[None, :] / (1 + zc)
    za = obs_wave[None, :] / LYA - 1
    tau = np.where(rest < LYA, 0.0018 * (1 + za) ** 3.92, 0.0)
    zb = obs_wave[None, :] / LYB - 1
    tau = tau + np.where(rest < LYB, 0.16 * 0.0018 * (1 + zb) ** 3.92, 0.0)
    g = np.exp(scatter * rng.standard_normal(tau.shape) - scatter**2 / 2)
    return np.where(rest < LYMAN_LIMIT, 0.0, np.exp(-tau * g))


def qso_rest_model(rest_wave, rng: np.random.Generator, n: int, lsf_sigma_ln: float):
    """Continuum and lines of ``n`` quasars at rest wavelengths, before the IGM.

    Parameters
    ----------
    rest_wave : ndarray (n, M)
        Rest wavelengths [Angstrom] of the pixels (observed / (1 + z)).
    rng : numpy.random.Generator
    n : int
    lsf_sigma_ln : float
        Instrumental Gaussian sigma in ln(wavelength) added to the line widths.

    Returns
    -------
    cont, lines : ndarray (n, M)
        Continuum and line flux densities (continuum 1 at 3000 A rest).
    """
    alpha = rng.normal(ALPHA_BLUE, 0.3, (n, 1))
    strength = 10 ** rng.normal(0.0, 0.2, (n, 1))
    cont = continuum(rest_wave, alpha)
    lines = np.zeros_like(cont)
    for _, lam, ew, fwhm in LINES:
        each = 10 ** rng.normal(0.0, 0.1, (n, 1))
        width = fwhm * rng.uniform(0.7, 1.3, (n, 1))
        sig_ln = np.hypot(width / C_KMS / 2.3548, lsf_sigma_ln)
        flux = ew * strength * each * continuum(np.full((n, 1), lam), alpha)
        x = np.log(rest_wave / lam) / sig_ln
        # a Gaussian in ln(lambda): the profile per Angstrom is that per ln(lambda) / lambda
        lines += flux * np.exp(-0.5 * x**2) / (np.sqrt(2 * np.pi) * sig_ln * rest_wave)
    return cont, lines
