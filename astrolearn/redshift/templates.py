"""Galaxy continuum templates: the shipped set, its provenance, LSF convolution, dust.

The package ships ``data/kcorrect_continua.fits``: the five Blanton & Roweis (2007) kcorrect v4
galaxy templates (PyPI package ``kcorrect``, BSD-3-Clause) with their emission lines removed,
resampled on a grid regular in ln(wavelength) from 900 to 26000 Angstrom (rest frame, vacuum)
and normalised to a median of 1 over 4000-8000 Angstrom. Emission lines are modelled
separately (:mod:`astrolearn.redshift.lines`). :func:`build_template_file` regenerates the
file from an installed ``kcorrect``; run time never needs ``kcorrect``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .lines import TEMPLATE_EMISSION_LINES

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_TEMPLATE_FILE = DATA_DIR / "kcorrect_continua.fits"
#: Rest-frame coverage [Angstrom] of the shipped templates.
REST_RANGE = (900.0, 26000.0)
#: FWHM = 2 sqrt(2 ln 2) sigma.
FWHM_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass
class ContinuumTemplates:
    """Rest-frame continuum templates on a grid regular in ln(wavelength).

    Attributes
    ----------
    names : list of str
        Template names.
    loglam : ndarray, shape (L,)
        Natural log of the rest vacuum wavelength [ln Angstrom], regular step.
    flux : ndarray, shape (T, L)
        Flux density f_lambda, arbitrary units (normalised to median 1 over 4000-8000 A).
    sigma_ln : float
        Gaussian smoothing already applied, in ln(wavelength) units (0 for the raw set).
    """

    names: list[str]
    loglam: np.ndarray
    flux: np.ndarray
    sigma_ln: float = 0.0

    @property
    def wave(self) -> np.ndarray:
        """Rest wavelength [Angstrom]."""
        return np.exp(self.loglam)

    @property
    def dloglam(self) -> float:
        """Grid step in ln(wavelength)."""
        return float(self.loglam[1] - self.loglam[0])

    def select(self, names) -> "ContinuumTemplates":
        """Subset of the templates by name (``UserError`` for an unknown name)."""
        idx = []
        for name in names:
            if name not in self.names:
                raise UserError(f"unknown template {name!r} (known: {', '.join(self.names)})")
            idx.append(self.names.index(name))
        return ContinuumTemplates([self.names[i] for i in idx], self.loglam, self.flux[idx], self.sigma_ln)

    def smoothed(self, sigma_ln: float, step: float | None = None) -> "ContinuumTemplates":
        """Templates convolved with a Gaussian of ``sigma_ln`` (ln-wavelength units).

        A line-spread function of constant resolving power R = lambda / FWHM is a Gaussian of
        constant sigma_ln = 1 / (R * 2.3548) in ln(wavelength), in the rest frame as in the
        observed frame. The result is resampled on a grid of ``step`` (default: the current
        step, or sigma_ln / 3 when finer).
        """
        from scipy.ndimage import gaussian_filter1d

        step = step or min(self.dloglam, max(sigma_ln, 1e-5) / 3.0)
        n = int(math.floor((self.loglam[-1] - self.loglam[0]) / step)) + 1
        grid = self.loglam[0] + step * np.arange(n)
        flux = np.stack([np.interp(grid, self.loglam, f) for f in self.flux])
        if sigma_ln > 0:
            flux = gaussian_filter1d(flux, sigma_ln / step, axis=1, mode="nearest", truncate=5.0)
        total = math.hypot(self.sigma_ln, sigma_ln)
        return ContinuumTemplates(list(self.names), grid, flux, total)

    def at_wavelengths(self, rest_wave) -> np.ndarray:
        """Templates linearly interpolated at rest wavelengths [Angstrom]; 0 outside coverage.

        Parameters
        ----------
        rest_wave : array_like, shape (...)
            Rest-frame wavelengths [Angstrom].

        Returns
        -------
        ndarray, shape (..., T)
        """
        x = np.log(np.asarray(rest_wave, dtype=np.float64))
        u = (x - self.loglam[0]) / self.dloglam
        i0 = np.clip(np.floor(u).astype(np.int64), 0, len(self.loglam) - 2)
        frac = u - i0
        inside = (u >= 0) & (u <= len(self.loglam) - 1)
        f = self.flux
        out = f[:, i0] * (1 - frac) + f[:, i0 + 1] * frac
        out = np.where(inside, out, 0.0)
        return np.moveaxis(out, 0, -1)


def load_templates(path=None, names=None) -> ContinuumTemplates:
    """Read continuum templates from a FITS file (default: the shipped kcorrect set).

    Parameters
    ----------
    path : path-like, optional
        FITS file with an image HDU ``FLUX`` (T, L), header ``CRVAL1`` = ln(lambda_0 / A),
        ``CDELT1`` = step in ln(lambda) and ``TNAMEi`` keywords, as written by
        :func:`build_template_file`.
    names : sequence of str, optional
        Keep only these templates.
    """
    from astropy.io import fits

    path = Path(path) if path is not None else DEFAULT_TEMPLATE_FILE
    if not path.exists():
        raise UserError(f"{path}: no such template file")
    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = hdul["FLUX"]
            flux = np.asarray(hdu.data, dtype=np.float64)
            hdr = hdu.header
            loglam = hdr["CRVAL1"] + hdr["CDELT1"] * np.arange(flux.shape[1])
            tnames = [str(hdr.get(f"TNAME{i}", f"T{i}")) for i in range(flux.shape[0])]
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: not a continuum template file ({exc})") from None
    if flux.ndim != 2 or not np.all(np.isfinite(flux)):
        raise UserError(f"{path}: template FLUX must be a finite (T, L) array")
    tpl = ContinuumTemplates(tnames, loglam, flux)
    return tpl.select(names) if names else tpl


def remove_emission_lines(wave, flux, lines=TEMPLATE_EMISSION_LINES, half_width=0.0026,
                          threshold=0.02) -> np.ndarray:
    """Replace emission lines of a template by a linear interpolation of the continuum.

    A line is removed when the template exceeds its running median (31 pixels) by more than
    ``threshold`` within ``half_width`` (ln-wavelength units) of its wavelength, so absorption
    features of old populations are kept.

    Parameters
    ----------
    wave : ndarray, shape (L,)
        Rest wavelength [Angstrom], increasing.
    flux : ndarray, shape (L,)
        Template flux density.
    lines : sequence of float
        Vacuum rest wavelengths [Angstrom] of candidate emission lines.
    half_width : float
        Half width of the replaced region in ln(wavelength).
    threshold : float
        Relative excess over the running median that flags a line.
    """
    from scipy.ndimage import median_filter

    flux = np.asarray(flux, dtype=np.float64).copy()
    loglam = np.log(wave)
    med = median_filter(flux, size=31, mode="nearest")
    bad = np.zeros(flux.shape, dtype=bool)
    for lam in lines:
        sel = np.abs(loglam - math.log(lam)) < half_width
        if sel.any() and np.max(flux[sel] / np.maximum(med[sel], 1e-300)) > 1 + threshold:
            bad |= sel
    if bad.any():
        flux[bad] = np.interp(loglam[bad], loglam[~bad], flux[~bad])
    return flux


def resample_templates(names, waves, fluxes, step: float | None = None,
                       rest_range=REST_RANGE) -> ContinuumTemplates:
    """Templates on a common grid regular in ln(wavelength), emission lines removed, normalised.

    Parameters
    ----------
    names : sequence of str
        Template names.
    waves, fluxes : sequence of ndarray (L_i,)
        Rest vacuum wavelength [Angstrom], increasing, and flux density f_lambda of each template.
    step : float, optional
        ln(wavelength) step of the grid (default: the median step of the inputs over the grid).
    rest_range : (float, float)
        Widest rest-frame coverage [Angstrom]; the grid is its overlap with every template's
        coverage (never extrapolated).

    Returns
    -------
    ContinuumTemplates
        Normalised to a median of 1 over 4000-8000 Angstrom.
    """
    lo = math.log(max(rest_range[0], *(float(w[0]) for w in waves)))
    hi = math.log(min(rest_range[1], *(float(w[-1]) for w in waves)))
    if step is None:
        diffs = np.concatenate([np.diff(np.log(w))[(np.log(w[1:]) > lo) & (np.log(w[1:]) < hi)] for w in waves])
        step = float(np.median(diffs))
    grid = lo + step * np.arange(int(math.floor((hi - lo) / step)) + 1)
    sel = (grid > math.log(4000.0)) & (grid < math.log(8000.0))
    out = []
    for w, f in zip(waves, fluxes):
        g = np.interp(grid, np.log(w), remove_emission_lines(w, f))
        out.append(g / np.median(g[sel]))
    return ContinuumTemplates(list(names), grid, np.asarray(out, dtype=np.float64))


def read_text_template(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a template text file: columns rest wavelength [Angstrom] and f_lambda, ``#`` comments.

    Raises ``UserError`` (one line naming the file) for an unreadable file, fewer than two
    columns or rows, non-finite or negative values, or wavelengths not strictly increasing.
    """
    path = Path(path)
    try:
        data = np.loadtxt(path, comments="#", ndmin=2, usecols=(0, 1))
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a template text file 'wavelength flux' ({exc})") from None
    if data.shape[0] < 2:
        raise UserError(f"{path}: a template needs at least two rows 'wavelength flux'")
    wave, flux = data[:, 0], data[:, 1]
    if not (np.all(np.isfinite(data)) and np.all(wave > 0) and np.all(flux >= 0)):
        raise UserError(f"{path}: template wavelengths must be finite and > 0, fluxes finite and >= 0")
    if not np.all(np.diff(wave) > 0):
        raise UserError(f"{path}: template wavelengths must be strictly increasing")
    return wave, flux


#: Template family name of the shipped set (``load_family``).
PACKAGE_FAMILY = "package"
TEXT_SUFFIXES = (".dat", ".txt", ".sed", ".ascii")


def load_family(spec=PACKAGE_FAMILY) -> ContinuumTemplates:
    """Continuum templates of a family: the shipped set, a template FITS file or text templates.

    Parameters
    ----------
    spec : str or path-like
        ``"package"`` (the shipped kcorrect set), a FITS file as written by
        :func:`build_template_file`, one text template (see :func:`read_text_template`) or a
        directory of them (every ``*.dat``, ``*.txt``, ``*.sed``, ``*.ascii`` file, in name order,
        named by file stem). Text templates are resampled by :func:`resample_templates` (emission
        lines removed, median 1 over 4000-8000 A), so they must cover 4000-8000 A (rest).
    """
    if str(spec) == PACKAGE_FAMILY:
        return load_templates()
    path = Path(spec)
    if not path.exists():
        raise UserError(f"{path}: no such template file or directory")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise UserError(f"{path}: no template files ({', '.join('*' + s for s in TEXT_SUFFIXES)}) in this directory")
    elif path.name.lower().endswith((".fits", ".fit", ".fits.gz")):
        return load_templates(path)
    else:
        files = [path]
    spectra = [read_text_template(p) for p in files]
    for p, (wave, flux) in zip(files, spectra):
        sel = (wave > 4000.0) & (wave < 8000.0)
        if wave[0] > 4000.0 or wave[-1] < 8000.0 or not np.median(flux[sel]) > 0:
            raise UserError(f"{p}: a template must cover 4000-8000 A (rest) with a positive median flux there")
    return resample_templates([p.stem for p in files], *zip(*spectra))


def build_template_file(out, source=None, step: float | None = None) -> Path:
    """Write the shipped template file from the ``kcorrect`` package (developer tool).

    Parameters
    ----------
    out : path-like
        Destination FITS file.
    source : path-like, optional
        kcorrect template FITS (default: ``kcorrect-default-v4.fits`` of the installed package).
    step : float, optional
        ln(wavelength) step of the output grid (default: kcorrect's native 8.58e-4).
    """
    from astropy.io import fits

    if source is None:
        try:
            import kcorrect
        except ImportError:
            raise UserError("building the template file needs the 'kcorrect' package "
                            "(pip install kcorrect)") from None
        source = Path(kcorrect.__file__).parent / "data" / "templates" / "kcorrect-default-v4.fits"
    with fits.open(source, memmap=False) as hdul:
        table = hdul["FLUX"].data
        wave = np.asarray(table["wave"][0], dtype=np.float64)
        flux = np.asarray(table["flux"][0], dtype=np.float64)
    step = step or float(np.median(np.diff(np.log(wave))))
    tpl = resample_templates([f"kcorrect{i}" for i in range(len(flux))], [wave] * len(flux), flux, step)
    hdu = fits.ImageHDU(tpl.flux.astype(np.float32), name="FLUX")
    hdu.header["CRVAL1"] = (float(tpl.loglam[0]), "ln(rest vacuum wavelength/A) of pixel 0")
    hdu.header["CDELT1"] = (step, "step in ln(wavelength)")
    hdu.header["BUNIT"] = ("arbitrary", "f_lambda, median 1 over 4000-8000 A")
    for i, name in enumerate(tpl.names):
        hdu.header[f"TNAME{i}"] = name
    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = "kcorrect v4 default templates (Blanton & Roweis 2007)"
    primary.header["LICENSE"] = "BSD-3-Clause (kcorrect)"
    primary.header["COMMENT"] = "Emission lines removed; lines are fitted separately."
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([primary, hdu]).writeto(out, overwrite=True, output_verify="silentfix")
    return out


def calzetti_klambda(wave) -> np.ndarray:
    """Calzetti et al. (2000) starburst attenuation curve k(lambda) (R_V = 4.05).

    Parameters
    ----------
    wave : array_like
        Rest wavelength [Angstrom]; extrapolated linearly in 1/lambda outside 0.12-2.2 um.

    Returns
    -------
    ndarray
        k(lambda); the attenuation is A_lambda = k(lambda) E(B-V) [mag].
    """
    x = 1e4 / np.asarray(wave, dtype=np.float64)  # inverse microns
    lam = 1.0 / x
    k_blue = 2.659 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + 4.05
    k_red = 2.659 * (-1.857 + 1.040 * x) + 4.05
    k = np.where(lam < 0.63, k_blue, k_red)
    return np.maximum(k, 0.0)
