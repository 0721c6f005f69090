"""Stellar spectra for the simulator: the shipped library, its provenance and how it is built.

The package ships ``data/stars.fits``: rest-frame (vacuum) stellar spectra on a grid regular
in ln(wavelength), in the :class:`~astrolearn.redshift.templates.ContinuumTemplates` format
(FITS image ``FLUX`` (T, L), ``CRVAL1``/``CDELT1`` in ln Angstrom, ``TNAMEi`` = spectral type),
each normalised to a median of 1 over its coverage, 0 where a spectrum has no data. Two
sources, both on PyPI:

- the SpeX Prism Library shipped with ``splat`` (Burgasser 2014; MIT licence): real IRTF/SpeX
  spectra, 0.65-2.55 um at R ~ 75-200, mostly M, L and T dwarfs, plus the few earlier types of
  the library. Spectra of median S/N >= :data:`MIN_SNR` are kept, at most
  :data:`PER_TYPE` per spectral subtype; pixels with S/N < 5 (the telluric water bands) are
  interpolated over;
- the Basel library spectra that ``kcorrect`` ships (Lejeune et al. 1997): the Kurucz models
  of the Sun (G2V) and Vega (A0V), 9.1 nm - 160 um, 2-20 nm sampling. ``kcorrect`` ships
  these two only, not the full Basel grid; they are the only hot stars and the only stars
  blueward of 0.65 um. The simulator widens them into a temperature sequence by tilting
  them with a ratio of black bodies (:func:`tilted`), which changes the continuum shape but
  not the absorption lines: optical stars are the weak point of the simulation.

:func:`build_star_file` regenerates the file from the installed packages (developer tool);
run time needs neither.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..redshift.templates import ContinuumTemplates, load_templates

STAR_FILE = Path(__file__).parent / "data" / "stars.fits"
#: Rest-frame grid of the shipped file [Angstrom] and its ln(wavelength) step.
GRID = (3000.0, 26000.0)
STEP = 1.5e-3
#: Selection of the SpeX spectra.
MIN_SNR = 40.0
PER_TYPE = 8
#: The two Basel spectra that kcorrect ships: name, file, effective temperature [K].
BASEL = (("G2V-sun", "lcbsun.ori", 5777.0), ("A0V-vega", "lcbvega.ori", 9550.0))
H_C_K = 1.4387769e8  # h c / k [Angstrom K]


def load_stars(path=None) -> ContinuumTemplates:
    """The stellar library (default: the shipped file), names = spectral types."""
    return load_templates(path or STAR_FILE)


def basel_indices(stars: ContinuumTemplates) -> list[int]:
    """Indices of the Basel (full-coverage, temperature-tiltable) spectra of ``stars``."""
    return [i for i, n in enumerate(stars.names) if n in {b[0] for b in BASEL}]


def covering(stars: ContinuumTemplates, wmin: float, wmax: float) -> np.ndarray:
    """Indices of the spectra with data over the whole rest range ``wmin``-``wmax`` [Angstrom]."""
    sel = (stars.wave >= wmin) & (stars.wave <= wmax)
    if not sel.any():
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero((stars.flux[:, sel] > 0).all(axis=1))


def tilted(rest_wave, t_from, t_to) -> np.ndarray:
    """B_lambda(T_to) / B_lambda(T_from), normalised to 1 at 1 um (to re-colour a spectrum).

    Parameters
    ----------
    rest_wave : ndarray (..., M)
        Rest wavelengths [Angstrom].
    t_from, t_to : ndarray (..., 1) or float
        Effective temperatures [K].
    """
    def log_b(w, t):
        x = H_C_K / (w * t)
        return -5 * np.log(w) - np.log(np.expm1(np.minimum(x, 700.0)))

    return np.exp(log_b(rest_wave, t_to) - log_b(rest_wave, t_from)
                  - (log_b(1e4, t_to) - log_b(1e4, t_from)))


def _read_basel(path) -> tuple[np.ndarray, np.ndarray]:
    values = np.array(Path(path).read_text().split(), dtype=object)
    wave = values[:1221].astype(np.float64) * 10.0  # nm -> Angstrom
    flux = values[1221 + 6:1221 + 6 + 1221].astype(np.float64)  # after the 6 model parameters
    return wave, flux * 4 * math.pi


def _spex_selection(root: Path) -> list[tuple[str, Path]]:
    """(spectral type, file) of the SpeX spectra kept (see the module documentation)."""
    with open(root / "db" / "spectral_data.txt", encoding="latin1") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    chosen, per = [], {}
    for r in sorted(rows, key=lambda r: -float(r.get("MEDIAN_SNR") or 0)):
        spt = (r.get("SPEX_TYPE") or "").strip()
        path = root / "resources" / "Spectra" / "Public" / "SPEX-PRISM" / f"{r['DATA_KEY']}_{r['SOURCE_KEY']}.fits.gz"
        if not spt or spt[0] not in "OBAFGKMLT" or float(r.get("MEDIAN_SNR") or 0) < MIN_SNR or not path.exists():
            continue
        key = spt.split()[0][:4].rstrip(":")
        if per.get(key, 0) < PER_TYPE:
            per[key] = per.get(key, 0) + 1
            chosen.append((spt, path))
    return chosen


def build_star_file(out=STAR_FILE) -> Path:
    """Write the stellar library file from the installed ``splat`` and ``kcorrect`` (developer tool)."""
    from astropy.io import fits

    import importlib.util

    try:
        import kcorrect

        spec = importlib.util.find_spec("splat")  # not imported: splat needs pandas at import
        if spec is None:
            raise ImportError
    except ImportError:
        raise UserError("building the star file needs the 'splat' and 'kcorrect' packages "
                        "(pip install --no-deps splat; pip install kcorrect)") from None
    loglam = np.arange(math.log(GRID[0]), math.log(GRID[1]), STEP)
    wave = np.exp(loglam)
    names, fluxes = [], []
    for name, fname, _ in BASEL:
        w, f = _read_basel(Path(kcorrect.__file__).parent / "data" / "basel" / fname)
        fluxes.append(np.interp(wave, w, f))
        names.append(name)
    for spt, path in _spex_selection(Path(spec.origin).parent):
        with warnings.catch_warnings(), fits.open(path, memmap=False) as h:
            warnings.simplefilter("ignore")  # Spextool's non-standard history cards
            data = np.asarray(h[0].data, dtype=np.float64)
        if data.ndim != 2 or len(data) < 3:
            continue  # a few files have no noise row: their S/N cannot be checked
        w, f, e = data[:3]
        w = w * 1e4  # um -> Angstrom (SpeX wavelengths are vacuum)
        good = np.isfinite(w) & np.isfinite(f) & np.isfinite(e) & (e > 0) & (f / np.where(e > 0, e, 1) > 5)
        if good.sum() < 100:
            continue
        w, f = w[good], f[good]
        inside = (wave >= w[0]) & (wave <= w[-1])
        fluxes.append(np.where(inside, np.interp(wave, w, f), 0.0))
        names.append(spt)
    flux = np.array(fluxes)
    flux /= np.array([np.median(r[r > 0]) for r in flux])[:, None]
    hdu = fits.ImageHDU(flux.astype(np.float32), name="FLUX")
    hdu.header["CRVAL1"] = (float(loglam[0]), "ln(rest vacuum wavelength/A) of pixel 0")
    hdu.header["CDELT1"] = (STEP, "step in ln(wavelength)")
    hdu.header["BUNIT"] = ("arbitrary", "f_lambda, median 1 over the coverage, 0 = no data")
    for i, name in enumerate(names):
        hdu.header[f"TNAME{i}"] = name
    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = "SpeX Prism Library (splat, MIT) + Basel Sun/Vega (kcorrect, BSD-3)"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([primary, hdu]).writeto(out, overwrite=True, output_verify="silentfix")
    return out
