"""Mean transmission of the intergalactic medium (Inoue et al. 2014, MNRAS 442, 1805).

Neutral hydrogen between a source at redshift z_S and the observer absorbs the source's light
blueward of Lyman alpha: Lyman-series lines of the Lyman-alpha forest (LAF) and of damped
systems (DLA), and the Lyman continuum below 911.8 (1 + z_S) Angstrom. The redshift engine
multiplies its continuum templates by this mean transmission, exp(-tau), so that a spectrum
whose flux drops blueward of a line can be read as Lyman alpha at high redshift. At NISP
wavelengths (> 12 000 A) it matters only for z > 8.9; on optical spectra from z ~ 2.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

#: Lyman limit [Angstrom] of the model's Lyman-continuum terms.
LYMAN_LIMIT = 911.8
#: Lyman alpha [Angstrom, vacuum]: no absorption redward of (1 + z_S) times this.
LYMAN_ALPHA = 1215.67


@lru_cache(maxsize=1)
def _table() -> np.ndarray:
    """Inoue et al. (2014) Table 2: (39, 6) lambda_j, A_LAF_j1..3, A_DLA_j1..2."""
    path = resources.files("astrolearn.redshift") / "data" / "inoue14_lyman_series.txt"
    return np.loadtxt(str(path))[:, 1:]


def _lyman_series_tau(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel optical depth of each Lyman-series line, cumulated over the series.

    For a pixel at observed wavelength lambda, line j absorbs when lambda_j < lambda <
    lambda_j (1 + z_S); its LAF and DLA depths depend on lambda only (Inoue et al. 2014,
    eqs 21-22). Lines are ordered by decreasing lambda_j, so the lines absorbing at a given z_S
    are the first J of them, J = number of lambda_j > lambda / (1 + z_S).

    Returns
    -------
    lam : ndarray (J,)
        Line wavelengths [Angstrom], decreasing.
    cum : ndarray (J + 1, M)
        cum[k] = total optical depth of the first k lines at each pixel.
    """
    t = _table()
    lam = t[:, 0:1]
    x = wave[None, :] / lam
    laf = np.where(x < 2.2, t[:, 1:2] * x**1.2, np.where(x < 5.7, t[:, 2:3] * x**3.7, t[:, 3:4] * x**5.5))
    dla = np.where(x < 3.0, t[:, 4:5] * x**2, t[:, 5:6] * x**3)
    tau = np.where(x > 1.0, laf + dla, 0.0)
    cum = np.concatenate([np.zeros((1, wave.size)), np.cumsum(tau, axis=0)])
    return lam[:, 0], cum


def _lyman_continuum_tau(x: np.ndarray, s: float) -> np.ndarray:
    """LAF + DLA Lyman-continuum optical depth (Inoue et al. 2014, eqs 25-29).

    ``x``: observed wavelengths in units of the Lyman limit (1 < x < s); ``s``: 1 + z_S.
    """
    if s < 2.2:
        laf = 0.3248 * (x**1.2 - s**-0.9 * x**2.1)
    elif s < 5.7:
        laf = np.where(x < 2.2, 2.545e-2 * s**1.6 * x**2.1 + 0.3248 * x**1.2 - 0.2496 * x**2.1,
                       2.545e-2 * (s**1.6 * x**2.1 - x**3.7))
    else:
        laf = np.where(x < 2.2, 5.221e-4 * s**3.4 * x**2.1 + 0.3248 * x**1.2 - 3.140e-2 * x**2.1,
                       np.where(x < 5.7, 5.221e-4 * s**3.4 * x**2.1 + 0.2182 * x**2.1 - 2.545e-2 * x**3.7,
                                5.221e-4 * (s**3.4 * x**2.1 - x**5.5)))
    if s < 3.0:
        dla = 0.2113 * s**2 - 0.07661 * s**2.3 * x**-0.3 - 0.1347 * x**2
    else:
        dla = np.where(x < 3.0,
                       0.6340 + 0.04696 * s**3 - 0.01779 * s**3.3 * x**-0.3 - 0.1347 * x**2 - 0.2905 * x**-0.3,
                       0.04696 * s**3 - 0.01779 * s**3.3 * x**-0.3 - 0.02916 * x**3)
    return laf + dla


def igm_transmission(wave, z) -> np.ndarray:
    """Mean IGM transmission exp(-tau) of sources at redshifts ``z`` (Inoue et al. 2014).

    Parameters
    ----------
    wave : array_like, shape (M,)
        Observed vacuum wavelengths [Angstrom], increasing.
    z : array_like, shape (Z,)
        Source redshifts.

    Returns
    -------
    ndarray, shape (Z, M)
        Transmission in [0, 1]; 1 redward of Lyman alpha.
    """
    wave = np.asarray(wave, dtype=np.float64)
    z = np.atleast_1d(np.asarray(z, dtype=np.float64))
    out = np.ones((z.size, wave.size))
    # only pixels blueward of Lyman alpha at the highest redshift are absorbed
    m = int(np.searchsorted(wave, LYMAN_ALPHA * (1.0 + z.max())))
    if m == 0:
        return out
    lam, cum = _lyman_series_tau(wave[:m])
    # lines absorbing at a pixel: lambda_j > wave / (1 + z); lam is decreasing
    rest = wave[None, :m] / (1.0 + z[:, None])
    n = lam.size - np.searchsorted(lam[::-1], rest, side="right")
    tau = cum[n, np.arange(m)]
    x = wave[:m] / LYMAN_LIMIT
    for i in np.flatnonzero(x[0] < 1.0 + z):
        k = int(np.searchsorted(x, 1.0 + z[i]))
        tau[i, :k] += np.where(x[:k] > 1.0, _lyman_continuum_tau(x[:k], 1.0 + z[i]), 0.0)
    out[:, :m] = np.exp(-np.maximum(tau, 0.0))
    return out
