"""Readers of survey spectrum files (SDSS/BOSS, 6dFGS, OzDES/2dfdr, LAMOST, APOGEE, 1D tables).

Every reader returns a :class:`~astrolearn.redshift.io.Spectra` in the conventions of
:mod:`astrolearn.redshift.io`: vacuum wavelengths [Angstrom], flux density [erg/s/cm2/A] (or
the survey's relative units where it is not flux-calibrated, see below), inverse variance (0 =
ignored pixel), and the line-spread function (LSF) of the survey, as a Gaussian sigma per
pixel [Angstrom], from the file when it says it, else from the survey's resolving power
``R = lambda / FWHM`` below. :func:`detect` recognises the format from the FITS structure.

Formats (default resolving power R = lambda/FWHM in brackets):

- ``sdss`` (R from ``wdisp``): ``spec-*`` files of SDSS-I/II, BOSS and eBOSS, also renamed copies
  and the picca DR16 variants without EXTNAME and with upper-case columns. HDU1 ``loglam``,
  ``flux`` (1e-17 erg/s/cm2/A), ``ivar``, ``and_mask`` (bits :data:`SDSS_BADMASK` are bad),
  LSF sigma from ``wdisp`` (in pixels of 1e-4 dex); HDU2 ``Z`` becomes the truth ``z``.
- ``6dfgs`` (1000): ``*_1d.fits``. HDU1 table ``WAVE`` (air, rounded to 0.1 A: a linear fit of
  wavelength against pixel replaces it), ``FLUX`` (counts/s, not flux-calibrated; -999 = no
  data). No error array: sigma is the local robust scatter of the flux (:func:`robust_sigma`).
  Primary ``Z`` (observed frame) becomes the truth ``z``.
- ``ozdes`` (1400): 2dfdr/AAOmega reduced files. Primary flux (one row per fibre, counts),
  ``VARIANCE``, wavelengths from the linear WCS (air) or from a ``WAVELENGTH`` HDU of
  log10(vacuum A).
- ``lamost`` (1800): LAMOST LRS. Primary 5 x M image: flux (relative calibration, scaled by
  1e-17 like SDSS), ivar, wavelength (DR6+) or sub-continuum (DR1, whose log-linear wavelengths
  come from ``COEFF0``/``COEFF1``), andmask (non-zero = bad), ormask; header ``Z`` as truth.
- ``apogee`` (22500): apVisit. HDU1 flux (1e-17 erg/s/cm2/A), HDU2 error, HDU3 pixel mask
  (bits of :data:`APOGEE_BADMASK` are bad), HDU4 wavelength; the 3 chips are merged.
- ``table`` (NIRSpec PRISM: :data:`PRISM_R`; else 3000 optical / 450 near-IR): a 1D table with
  wavelength, flux and error columns and their units, such as msaexp's ``SPEC1D`` (um, uJy);
  f_nu is converted to f_lambda.

Resolving powers are the surveys' nominal values (6dF V grating FWHM ~5 A near 5000 A;
AAOmega 580V/385R; LAMOST LRS at 5500 A; APOGEE; the NIRSpec PRISM curve of
:data:`PRISM_R`, R = 30-330). ``--resolution`` overrides them. Redshift catalogues
(a table of ``TARGETID``/``Z`` without flux) are refused with a one-line error.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import UserError
from .io import Spectra, _check_values, _open_fits, air_to_vacuum
from .templates import FWHM_SIGMA

R_6DF = 1000.0
R_OZDES = 1400.0
R_LAMOST = 1800.0
R_APOGEE = 22500.0
#: NIRSpec PRISM/CLEAR resolving power (wavelength [um], R): JDox dispersion curve, approximate.
PRISM_R = np.array([[0.6, 85], [0.8, 50], [1.0, 35], [1.2, 30], [1.5, 40], [2.0, 70], [2.5, 100],
                    [3.0, 140], [3.5, 180], [4.0, 220], [4.5, 270], [5.3, 330]], dtype=np.float64)
#: APOGEE pixel-mask bits that make a pixel unusable (BADPIX, CRPIX, SATPIX, UNFIXABLE,
#: BADDARK, BADFLAT, BADERR, NOSKY, NOT_ENOUGH_PSF): the APOGEE pipeline's BADMASK.
APOGEE_BADMASK = 16639
#: SDSS ``and_mask`` bits (bad in every exposure) that make a pixel unusable: NOPLUG, BADTRACE,
#: BADFLAT, BADARC, FULLREJECT, NOSKY, BRIGHTSKY (sky residuals that mimic lines), NODATA.
#: Others (e.g. MANYBADCOLUMNS, set on half of some spectra) leave usable data.
SDSS_BADMASK = sum(1 << b for b in (0, 1, 2, 3, 18, 22, 23, 24))
SDSS_FLUX_SCALE = 1e-17
C_A_PER_S = 2.99792458e18


def _sigma(wave, resolution) -> np.ndarray:
    return np.asarray(wave, dtype=np.float64) / (np.asarray(resolution, dtype=np.float64) * FWHM_SIGMA)


def _ivar_from_sigma(sig) -> np.ndarray:
    sig = np.asarray(sig, dtype=np.float64)
    ok = np.isfinite(sig) & (sig > 0)
    return np.where(ok, 1.0 / np.where(ok, sig, 1.0) ** 2, 0.0)


def _finish(path, wave, flux, ivar, targetid, lsf, z_true=None) -> Spectra:
    """Sort by wavelength, zero unusable pixels, check values; ``z_true`` becomes truth ``z``."""
    wave = np.asarray(wave, dtype=np.float64)
    flux, ivar = np.atleast_2d(np.asarray(flux, np.float64)), np.atleast_2d(np.asarray(ivar, np.float64))
    ivar = np.where(np.isfinite(ivar) & np.isfinite(flux) & (ivar > 0), ivar, 0.0)
    if not np.all(np.isfinite(wave)) or np.any(wave <= 0):
        raise UserError(f"{path}: wavelengths must be finite and > 0")
    if not (ivar > 0).any(axis=1).all():
        raise UserError(f"{path}: a spectrum has no usable pixel (all inverse variances 0)")
    order = np.argsort(wave, kind="stable")
    wave, flux, ivar, lsf = wave[order], flux[:, order], ivar[:, order], np.asarray(lsf, np.float64)[order]
    flux = np.where(np.isfinite(flux), flux, 0.0)
    _check_values(path, "spectrum", flux, ivar)
    truth = {}
    if z_true is not None:
        truth = {"params": np.asarray(z_true, dtype=np.float64).reshape(-1, 1), "names": ["z"]}
    return Spectra(wave, flux, ivar, np.asarray(targetid, dtype=np.int64).ravel(), lsf_sigma=lsf,
                   pixel_width=np.gradient(wave), truth=truth)


def _columns(table) -> dict:
    """Column arrays of a FITS table keyed by lower-case name."""
    return {n.lower(): np.asarray(table[n]) for n in table.columns.names}


def _image(hdu):
    return hdu.data is not None and not hasattr(hdu, "columns") and np.ndim(hdu.data) >= 1


# --------------------------------------------------------------------------------------------
# detection
# --------------------------------------------------------------------------------------------
WAVE_COLS = ("wave", "wavelength", "lambda", "loglam")
FLUX_COLS = ("flux", "fnu", "flam")
ERR_COLS = ("err", "error", "flux_err", "sigma", "ivar")


def detect(hdul) -> str | None:
    """Format name of an open FITS file (see module doc), ``"catalogue"`` or None."""
    h0 = hdul[0].header
    if len(hdul) > 2 and hasattr(hdul[1], "columns"):
        cols = {c.lower() for c in hdul[1].columns.names}
        if {"loglam", "flux", "ivar"} <= cols:
            return "sdss"
    if len(hdul) > 1 and hasattr(hdul[1], "columns"):
        cols = {c.lower() for c in hdul[1].columns.names}
        if {"wave", "flux"} <= cols and not cols & set(ERR_COLS) and "QUALITY" in h0:
            return "6dfgs"
    if _image(hdul[0]) and "VARIANCE" in hdul and ("WAVELENGTH" in hdul or "CRVAL1" in h0):
        return "ozdes"
    if _image(hdul[0]) and np.ndim(hdul[0].data) == 2 and hdul[0].data.shape[0] == 5 and (
            "LAMOST" in str(h0.get("TELESCOP", "")).upper() or "COEFF0" in h0):
        return "lamost"
    if len(hdul) > 4 and all(_image(hdul[i]) for i in (1, 2, 3, 4)) and \
            str(hdul[4].header.get("BUNIT", "")).lower().startswith("wavelength"):
        return "apogee"
    tables = [h for h in hdul if hasattr(h, "columns") and h.data is not None]
    for t in tables:
        cols = {c.lower() for c in t.columns.names}
        if cols & set(WAVE_COLS) and cols & set(FLUX_COLS) and cols & set(ERR_COLS):
            return "table"
    for t in tables:
        cols = {c.lower() for c in t.columns.names}
        if "z" in cols and ("targetid" in cols or "objid" in cols):
            return "catalogue"
    return None


# --------------------------------------------------------------------------------------------
# readers (each takes the path and the open HDU list)
# --------------------------------------------------------------------------------------------
def read_sdss(path, hdul) -> Spectra:
    """SDSS/BOSS ``spec`` file (HDUs by index, column names in any case)."""
    c = _columns(hdul[1].data)
    wave = 10.0 ** c["loglam"].astype(np.float64)
    ivar = c["ivar"].astype(np.float64)
    if "and_mask" in c:
        ivar = np.where(c["and_mask"].astype(np.int64) & SDSS_BADMASK, 0.0, ivar)
    if "wdisp" in c:  # LSF sigma in pixels of 1e-4 dex
        wd = c["wdisp"].astype(np.float64)
        good = np.isfinite(wd) & (wd > 0)
        wd = np.where(good, wd, np.median(wd[good]) if good.any() else 1.0)
        lsf = wd * 1e-4 * np.log(10.0) * wave
    else:
        lsf = _sigma(wave, 2000.0)
    z_true, tid = None, 0
    if len(hdul) > 2 and hasattr(hdul[2], "columns") and hdul[2].data is not None and len(hdul[2].data) == 1:
        s = {k: v[0] for k, v in _columns(hdul[2].data).items()}
        z_true = [float(s["z"])] if "z" in s else None
        if {"plate", "mjd", "fiberid"} <= set(s):
            tid = int(s["plate"]) * 10**9 + int(s["mjd"]) * 10**4 + int(s["fiberid"])
    return _finish(path, wave, c["flux"] * SDSS_FLUX_SCALE, ivar / SDSS_FLUX_SCALE**2, [tid], lsf, z_true)


def robust_sigma(flux, good, window: int = 101) -> np.ndarray:
    """Per-pixel noise sigma of a spectrum without errors: local MAD of pixel-to-pixel differences.

    Differences remove the continuum; the median absolute deviation over ``window`` pixels
    ignores emission lines; /sqrt(2) because a difference holds two pixels' noise.
    """
    d = np.full(flux.shape, np.nan)
    d[1:] = np.where(good[1:] & good[:-1], np.diff(flux), np.nan)
    pad = window // 2
    win = np.lib.stride_tricks.sliding_window_view(np.pad(d, pad, constant_values=np.nan), window)
    with warnings.catch_warnings():  # all-NaN windows (no data) give NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(win, axis=1)
        mad = np.nanmedian(np.abs(win - med[:, None]), axis=1)
    return np.where(good, 1.4826 * mad / np.sqrt(2.0), np.nan)


def read_6dfgs(path, hdul) -> Spectra:
    """6dFGS ``*_1d.fits`` (see module doc)."""
    c = _columns(hdul[1].data)
    wave_rounded = c["wave"].astype(np.float64)
    pix = np.arange(wave_rounded.size)
    fit = np.polyval(np.polyfit(pix, wave_rounded, 1), pix)
    # rounding is +-0.05 A: a larger residual means the grid is not linear, keep it as written
    wave = fit if np.max(np.abs(fit - wave_rounded)) < 0.1 else wave_rounded
    flux = c["flux"].astype(np.float64)
    good = np.isfinite(flux) & (flux > -998.0)
    ivar = _ivar_from_sigma(robust_sigma(flux, good))
    wave = air_to_vacuum(wave)
    z = hdul[0].header.get("Z")
    return _finish(path, wave, flux, ivar, [0], _sigma(wave, R_6DF), None if z is None else [float(z)])


def read_ozdes(path, hdul) -> Spectra:
    """2dfdr/AAOmega reduced file (OzDES; see module doc)."""
    flux = np.atleast_2d(np.asarray(hdul[0].data, dtype=np.float64))
    var = np.atleast_2d(np.asarray(hdul["VARIANCE"].data, dtype=np.float64))
    if var.shape != flux.shape:
        raise UserError(f"{path}: VARIANCE {var.shape} does not match the flux {flux.shape}")
    if "WAVELENGTH" in hdul:
        lw = np.atleast_2d(np.asarray(hdul["WAVELENGTH"].data, dtype=np.float64))
        if lw.shape != flux.shape:
            raise UserError(f"{path}: WAVELENGTH {lw.shape} does not match the flux {flux.shape}")
        if np.ptp(lw, axis=0).max() > 1e-9:
            raise UserError(f"{path}: fibres have different wavelength grids (not supported)")
        wave = 10.0 ** lw[0]  # log10 of vacuum wavelengths
    else:
        h = hdul[0].header
        unit = str(h.get("CUNIT1", "Angstrom")).lower()
        if not unit.startswith("ang"):
            raise UserError(f"{path}: wavelength unit CUNIT1 = {unit!r}, expected Angstroms")
        pix = np.arange(flux.shape[1]) + 1.0
        wave = air_to_vacuum(h["CRVAL1"] + (pix - h.get("CRPIX1", 1.0)) * h["CDELT1"])
    return _finish(path, wave, flux, 1.0 / np.where(var > 0, var, np.inf), np.arange(len(flux)),
                   _sigma(wave, R_OZDES))


def read_lamost(path, hdul) -> Spectra:
    """LAMOST LRS spectrum (see module doc)."""
    h = hdul[0].header
    d = np.asarray(hdul[0].data, dtype=np.float64)
    rows = str(h.get("EXTEN0", "")).lower()
    if "wavelength" in rows:
        wave = d[2]
    elif "COEFF0" in h and "COEFF1" in h:  # DR1: row 2 is the sub-continuum
        wave = 10.0 ** (h["COEFF0"] + h["COEFF1"] * np.arange(d.shape[1]))
    else:
        raise UserError(f"{path}: LAMOST file without a wavelength row or COEFF0/COEFF1")
    ivar = np.where(d[3] != 0, 0.0, d[1])  # andmask: bad in every exposure
    if not h.get("VACUUM", True):
        wave = air_to_vacuum(wave)
    z = h.get("Z")
    tid = h.get("OBSID") or 0
    return _finish(path, wave, d[0] * SDSS_FLUX_SCALE, ivar / SDSS_FLUX_SCALE**2, [int(tid)],
                   _sigma(wave, R_LAMOST), None if z is None or float(z) < -9 else [float(z)])


def read_apogee(path, hdul) -> Spectra:
    """APOGEE apVisit (3 chips merged; see module doc)."""
    flux, err, mask, wave = (np.asarray(hdul[i].data, dtype=np.float64).ravel() for i in (1, 2, 3, 4))
    if not (flux.size == err.size == mask.size == wave.size):
        raise UserError(f"{path}: apVisit HDU1-4 (flux, error, mask, wavelength) sizes differ")
    ivar = np.where(mask.astype(np.int64) & APOGEE_BADMASK, 0.0, _ivar_from_sigma(err))
    scale = SDSS_FLUX_SCALE if "10^-17" in str(hdul[1].header.get("BUNIT", "")) else 1.0
    return _finish(path, wave, flux * scale, ivar / scale**2, [0], _sigma(wave, R_APOGEE))


def read_table(path, hdul) -> Spectra:
    """1D table spectrum with units (msaexp ``SPEC1D`` and alike)."""
    import astropy.units as u

    for t in hdul:
        if hasattr(t, "columns") and t.data is not None:
            names = {n.lower(): n for n in t.columns.names}
            if names.keys() & set(WAVE_COLS) and names.keys() & set(FLUX_COLS) and names.keys() & set(ERR_COLS):
                break

    def col(choices):
        key = next(k for k in choices if k in names)
        unit = t.columns[names[key]].unit
        return key, np.asarray(t.data[names[key]], dtype=np.float64), unit

    try:
        wkey, w, wu = col(WAVE_COLS)
        _, f, fu = col(FLUX_COLS)
        ekey, e, eu = col(ERR_COLS)
        wave = (10.0 ** w if wkey == "loglam" else w) * u.Unit(wu or "Angstrom")
        wave_a = wave.to(u.AA).value
        flam = u.erg / u.s / u.cm**2 / u.AA
        eq = u.spectral_density(wave)
        fscale = (1.0 * u.Unit(fu)).to(flam, equivalencies=eq).value if fu else np.ones_like(w)
        escale = (1.0 * u.Unit(eu)).to(flam, equivalencies=eq).value if eu else np.ones_like(w)
    except (ValueError, u.UnitsError) as exc:
        raise UserError(f"{path}: table {t.name}: unsupported units ({exc})") from None
    ivar = e / escale**2 if ekey == "ivar" else _ivar_from_sigma(e * escale)
    lsf = (_sigma(wave_a, np.interp(wave_a / 1e4, PRISM_R[:, 0], PRISM_R[:, 1]))
           if str(hdul[0].header.get("GRATING", t.header.get("GRATING", ""))).upper() == "PRISM"
           else _sigma(wave_a, 3000.0 if np.median(wave_a) < 9000 else 450.0))
    return _finish(path, wave_a, f * fscale, ivar, [0], lsf)


READERS = {"sdss": read_sdss, "6dfgs": read_6dfgs, "ozdes": read_ozdes, "lamost": read_lamost,
           "apogee": read_apogee, "table": read_table}


def read_survey(path, kind: str) -> Spectra:
    """Read a file of format ``kind`` (a key of :data:`READERS`)."""
    path = Path(path)
    with _open_fits(path) as hdul:
        try:
            return READERS[kind](path, hdul)
        except UserError:
            raise
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            msg = re.sub(r"\s+", " ", str(exc))[:120]
            raise UserError(f"{path}: not a readable {kind} spectrum ({exc.__class__.__name__}: {msg})") from None
