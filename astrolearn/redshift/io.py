"""Spectrum inputs and redshift outputs.

Inputs (:func:`open_input`), all converted to vacuum wavelengths in Angstrom, flux density in
erg/s/cm2/A and inverse variance (0 = ignored pixel):

- text ``wave flux err`` (whitespace or comma separated, ``#`` comments, optional header
  line), flux in erg/s/cm2/A unless a ``# BUNIT = ...`` comment says otherwise; err <= 0 or
  non-finite marks a pixel as ignored; one spectrum (targetid 0);
- FITS batch: image HDUs ``WAVELENGTH`` (M,), ``FLUX`` (N, M), ``IVAR`` (N, M), optional
  ``MASK`` (N, M) (non-zero = bad) and table ``TRUTH`` or ``FIBERMAP`` (``TARGETID``, and
  truth columns such as ``Z``); flux unit from ``BUNIT`` (default 1e-17 erg/s/cm2/A, the DESI
  convention), wavelength unit from ``BUNIT`` of WAVELENGTH (default Angstrom), air
  wavelengths converted when ``AIRORVAC = 'air'``; optional header ``RESOLUTION`` (R);
- DESI coadd: arms ``B_``/``R_``/``Z_`` ``WAVELENGTH``/``FLUX``/``IVAR``/``MASK`` (+
  ``RESOLUTION``, giving the LSF width) and ``FIBERMAP``; arms are merged (pixels sorted by
  wavelength, overlaps kept as independent measurements);
- survey files (SDSS/BOSS ``spec``, 6dFGS, 2dfdr/OzDES, LAMOST, APOGEE apVisit, 1D tables
  such as JWST msaexp ``spec.fits``), each with the survey's LSF: see
  :mod:`astrolearn.redshift.readers`;
- simulator shards (a directory of ``shard-*.h5`` or one shard): ``flux`` and ``noise``
  (sigma) or ``ivar``, wavelengths in the ``wave`` attribute, R from the ``instrument``
  attribute; truth columns are copied to the outputs.

Every problem (missing file, unreadable FITS/HDF5, wrong shapes, NaN in used pixels) raises a
one-line :class:`~astrolearn.errors.UserError` naming the file.

Outputs of ``astrolearn redshift estimate`` (directory): ``zpdf-00000.h5``, ... one per input
chunk (see :func:`write_chunk`), ``run.json`` (settings, for resuming) and, once every chunk is
done, ``redshifts.csv`` and ``redshifts.fits`` (one row per spectrum, input order).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import UserError
from ..io.shards import atomic_write, list_shards, read_meta
from .templates import FWHM_SIGMA

FLUX_UNIT = "erg/s/cm2/Angstrom"
DEFAULT_FITS_FLUX_SCALE = 1e-17


@dataclass
class Spectra:
    """A batch of spectra on one wavelength grid.

    Attributes
    ----------
    wave : ndarray (M,)
        Vacuum wavelengths [Angstrom], non-decreasing.
    flux : ndarray (N, M)
        Flux density [erg/s/cm2/A].
    ivar : ndarray (N, M)
        Inverse variance [(erg/s/cm2/A)^-2]; 0 for ignored pixels.
    targetid : ndarray (N,) int64
    lsf_sigma : ndarray (M,) or None
        Line-spread-function Gaussian sigma [Angstrom] when the input defines it.
    pixel_width : ndarray (M,) or None
    truth : dict
        ``{"params": (N, P) array, "names": [...]}`` when the input carries a truth table.
    """

    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    targetid: np.ndarray
    lsf_sigma: np.ndarray | None = None
    pixel_width: np.ndarray | None = None
    truth: dict = field(default_factory=dict)


@dataclass
class Chunk:
    """One unit of work of an input: ``load()`` returns its :class:`Spectra`."""

    source: Path
    kind: str
    start: int  # first row within the source
    count: int
    first_row: int  # position of the first spectrum in the whole input
    loader: object = None

    def load(self) -> Spectra:
        return self.loader(self)


# --------------------------------------------------------------------------------------------
# units
# --------------------------------------------------------------------------------------------
def flux_scale(bunit: str | None, default: float, path) -> float:
    """Factor converting a FITS ``BUNIT`` flux density to erg/s/cm2/A."""
    if not bunit:
        return default
    text = str(bunit).strip()
    try:
        import warnings

        import astropy.units as u

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            unit = u.Unit(text.replace("Angstrom", "AA").replace("angstrom", "AA"), format="generic")
        return float(unit.to(u.erg / u.s / u.cm**2 / u.AA))
    except Exception:  # noqa: BLE001 - any parse failure: try the common DESI spelling
        m = re.match(r"^\s*(1e|10\*\*)\s*([-+]?\d+)", text)
        if m and "erg" in text:
            return 10.0 ** int(m.group(2))
        if text.lower().startswith("erg"):
            return 1.0
    raise UserError(f"{path}: unsupported flux unit BUNIT = {text!r} (expected erg/s/cm2/Angstrom)")


def wave_scale(bunit: str | None, path) -> float:
    """Factor converting a wavelength unit to Angstrom."""
    if not bunit:
        return 1.0
    text = str(bunit).strip().lower()
    table = {"angstrom": 1.0, "angstroms": 1.0, "a": 1.0, "aa": 1.0, "nm": 10.0, "um": 1e4,
             "micron": 1e4, "microns": 1e4, "m": 1e10}
    if text in table:
        return table[text]
    raise UserError(f"{path}: unsupported wavelength unit {bunit!r} (Angstrom, nm or um)")


def air_to_vacuum(wave) -> np.ndarray:
    """Air to vacuum wavelengths [Angstrom] (Ciddor 1996 / Morton 2000 formula)."""
    wave = np.asarray(wave, dtype=np.float64)
    s2 = (1e4 / wave) ** 2
    n = 1 + 0.00008336624212083 + 0.02408926869968 / (130.1065924522 - s2) + 0.0001599740894897 / (38.92568793293 - s2)
    return wave * n


def _check_values(path, what, flux, ivar):
    used = ivar > 0
    if np.any(~np.isfinite(ivar)) or np.any(ivar < 0):
        raise UserError(f"{path}: {what}: inverse variances must be finite and >= 0")
    bad = used & ~np.isfinite(flux)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise UserError(f"{path}: {what}: NaN/inf flux in {int(bad.sum())} used pixel(s) (first in spectrum {row})")


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------
def read_text(path) -> Spectra:
    """Read a ``wave flux err`` text spectrum (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    scale = 1.0
    rows = []
    try:
        with open(path, encoding="utf-8", errors="strict") as fh:
            for lineno, line in enumerate(fh, 1):
                s = line.strip()
                if not s:
                    continue
                if s.startswith("#"):
                    m = re.match(r"#\s*BUNIT\s*[=:]\s*(.+)$", s, re.I)
                    if m:
                        scale = flux_scale(m.group(1).strip().strip("'\""), 1.0, path)
                    continue
                parts = re.split(r"[\s,;]+", s)
                try:
                    vals = [float(p) for p in parts]
                except ValueError:
                    if not rows:  # header line
                        continue
                    raise UserError(f"{path}:{lineno}: not numbers: {s[:60]!r}") from None
                if len(vals) < 3:
                    raise UserError(f"{path}:{lineno}: expected 3 columns 'wave flux err', got {len(vals)}")
                rows.append(vals[:3])
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text spectrum (binary content)") from None
    if len(rows) < 2:
        raise UserError(f"{path}: no spectrum rows (expected columns 'wave flux err')")
    data = np.asarray(rows, dtype=np.float64)
    wave, flux, err = data[:, 0], data[:, 1] * scale, data[:, 2] * scale
    if not np.all(np.isfinite(wave)) or np.any(wave <= 0):
        raise UserError(f"{path}: wavelengths must be finite and > 0")
    ok = np.isfinite(err) & (err > 0)
    ivar = np.where(ok, 1.0 / np.where(ok, err, 1.0) ** 2, 0.0)
    order = np.argsort(wave, kind="stable")
    wave, flux, ivar = wave[order], flux[order], ivar[order]
    flux = np.where(ivar > 0, flux, np.where(np.isfinite(flux), flux, 0.0))
    _check_values(path, "spectrum", flux[None], ivar[None])
    return Spectra(wave, flux[None], ivar[None], np.array([0], dtype=np.int64))


def _open_fits(path):
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    import warnings

    try:
        with warnings.catch_warnings():  # a corrupt file gets one error line, not warnings
            warnings.simplefilter("ignore")
            hdul = fits.open(path, memmap=False)
            _ = [h.header for h in hdul]  # force reading every header now
    except Exception as exc:  # noqa: BLE001 - astropy raises many types for corrupt files
        raise UserError(f"{path}: not a readable FITS file ({exc.__class__.__name__}: {exc})") from None
    return hdul


def _hdu_data(hdul, name, path):
    try:
        data = hdul[name].data
    except KeyError:
        raise UserError(f"{path}: no {name} HDU") from None
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{path}: HDU {name} is unreadable ({exc})") from None
    if data is None:
        raise UserError(f"{path}: HDU {name} is empty")
    return data


def fits_kind(path) -> str:
    """``"desi"`` for a DESI coadd, ``"fits"`` for a WAVELENGTH/FLUX/IVAR batch, else a survey
    format of :mod:`astrolearn.redshift.readers` (``"sdss"``, ``"lamost"``, ...).

    A redshift catalogue, or a FITS file of no known spectrum format, is a UserError.
    """
    from .readers import detect

    with _open_fits(path) as hdul:
        names = {h.name.upper() for h in hdul}
        if {"B_FLUX", "R_FLUX", "Z_FLUX"} & names and not {"FLUX"} & names:
            return "desi"
        if {"WAVELENGTH", "FLUX", "IVAR"} <= names:
            return "fits"
        kind = detect(hdul)
        if kind == "catalogue":
            tab = next(h for h in hdul if hasattr(h, "columns") and h.data is not None
                       and "Z" in {c.upper() for c in h.columns.names})
            raise UserError(f"{path}: a redshift catalogue (table {tab.name or 1}, {len(tab.data)} rows with Z), "
                            "not a spectrum: give the spectra file instead")
    if kind is None:
        raise UserError(f"{path}: FITS file of no known spectrum format (WAVELENGTH/FLUX/IVAR batch, DESI coadd, "
                        "SDSS/BOSS, 6dFGS, 2dfdr/OzDES, LAMOST, APOGEE apVisit, 1D table with wave/flux/err)")
    return kind


def _table_truth(hdul, n, path):
    """TARGETID and numeric truth columns from a TRUTH or FIBERMAP table."""
    for name in ("TRUTH", "FIBERMAP"):
        if name in hdul:
            tab = hdul[name].data
            if tab is None or len(tab) != n:
                raise UserError(f"{path}: {name} has {0 if tab is None else len(tab)} rows for {n} spectra")
            cols = tab.columns.names
            tid = np.asarray(tab["TARGETID"], dtype=np.int64) if "TARGETID" in cols else np.arange(n)
            truth = {}
            if name == "TRUTH":
                keep = [c for c in cols if c != "TARGETID" and np.asarray(tab[c]).ndim == 1
                        and np.issubdtype(np.asarray(tab[c]).dtype, np.number)]
                if keep:
                    truth = {"params": np.stack([np.asarray(tab[c], np.float64) for c in keep], 1),
                             "names": [c.lower() for c in keep]}
            return tid, truth
    return np.arange(n, dtype=np.int64), {}


def read_fits_batch(path, start: int = 0, count: int | None = None) -> Spectra:
    """Read rows ``start:start+count`` of a WAVELENGTH/FLUX/IVAR FITS batch (module doc)."""
    path = Path(path)
    with _open_fits(path) as hdul:
        wh = hdul["WAVELENGTH"].header if "WAVELENGTH" in hdul else {}
        wave = np.asarray(_hdu_data(hdul, "WAVELENGTH", path), dtype=np.float64).ravel() * wave_scale(
            wh.get("BUNIT"), path)
        flux = np.asarray(_hdu_data(hdul, "FLUX", path), dtype=np.float64)
        ivar = np.asarray(_hdu_data(hdul, "IVAR", path), dtype=np.float64)
        flux, ivar = np.atleast_2d(flux), np.atleast_2d(ivar)
        if flux.ndim != 2 or flux.shape != ivar.shape or flux.shape[1] != wave.size:
            raise UserError(f"{path}: FLUX {flux.shape} / IVAR {ivar.shape} do not match WAVELENGTH ({wave.size},)")
        n = flux.shape[0]
        if "MASK" in hdul:
            mask = np.atleast_2d(np.asarray(_hdu_data(hdul, "MASK", path)))
            if mask.shape != flux.shape:
                raise UserError(f"{path}: MASK {mask.shape} does not match FLUX {flux.shape}")
            ivar = np.where(mask != 0, 0.0, ivar)
        scale = flux_scale(hdul["FLUX"].header.get("BUNIT"), DEFAULT_FITS_FLUX_SCALE, path)
        tid, truth = _table_truth(hdul, n, path)
        res = hdul[0].header.get("RESOLUTION") or hdul["FLUX"].header.get("RESOLUTION")
        air = str(hdul[0].header.get("AIRORVAC", wh.get("AIRORVAC", "vac"))).lower().startswith("air")
    if not np.all(np.isfinite(wave)) or np.any(wave <= 0):
        raise UserError(f"{path}: WAVELENGTH must be finite and > 0")
    if air:
        wave = air_to_vacuum(wave)
    sl = slice(start, n if count is None else start + count)
    flux, ivar, tid = flux[sl] * scale, ivar[sl] / scale**2, tid[sl]
    if truth:
        truth = {"params": truth["params"][sl], "names": truth["names"]}
    order = np.argsort(wave, kind="stable")
    wave, flux, ivar = wave[order], flux[:, order], ivar[:, order]
    flux = np.where(ivar > 0, flux, np.where(np.isfinite(flux), flux, 0.0))
    _check_values(path, "FLUX/IVAR", flux, ivar)
    lsf = wave / (float(res) * FWHM_SIGMA) if res else None
    return Spectra(wave, flux, ivar, tid, lsf_sigma=lsf, truth=truth)


def _resolution_sigma(rdata, dw):
    """LSF sigma [Angstrom] per pixel from DESI resolution-matrix diagonals (N, ndiag, M)."""
    r = np.asarray(rdata, dtype=np.float64)
    if r.ndim == 2:
        r = r[None]
    nd = r.shape[1]
    off = np.arange(nd) - nd // 2
    tot = r.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mom = (r * off[None, :, None] ** 2).sum(axis=1) / tot
    sig = np.sqrt(np.nanmedian(np.where(tot > 0, mom, np.nan), axis=0))
    sig = np.where(np.isfinite(sig) & (sig > 0), sig, np.nanmedian(sig))
    return sig * dw


def read_desi_coadd(path) -> Spectra:
    """Read a DESI coadd (b, r, z arms merged; see module doc)."""
    path = Path(path)
    waves, fluxes, ivars, widths, sigmas = [], [], [], [], []
    with _open_fits(path) as hdul:
        arms = [a for a in ("B", "R", "Z") if f"{a}_FLUX" in hdul]
        if not arms:
            raise UserError(f"{path}: no DESI arm (B_FLUX/R_FLUX/Z_FLUX)")
        n = None
        scale = None
        for a in arms:
            w = np.asarray(_hdu_data(hdul, f"{a}_WAVELENGTH", path), dtype=np.float64).ravel()
            f = np.atleast_2d(np.asarray(_hdu_data(hdul, f"{a}_FLUX", path), dtype=np.float64))
            iv = np.atleast_2d(np.asarray(_hdu_data(hdul, f"{a}_IVAR", path), dtype=np.float64))
            if f.shape != iv.shape or f.shape[1] != w.size:
                raise UserError(f"{path}: arm {a}: FLUX {f.shape} / IVAR {iv.shape} do not match WAVELENGTH ({w.size},)")
            if n is None:
                n = f.shape[0]
            elif f.shape[0] != n:
                raise UserError(f"{path}: arm {a} has {f.shape[0]} spectra, expected {n}")
            if f"{a}_MASK" in hdul:
                m = np.atleast_2d(np.asarray(_hdu_data(hdul, f"{a}_MASK", path)))
                if m.shape != f.shape:
                    raise UserError(f"{path}: arm {a}: MASK {m.shape} does not match FLUX {f.shape}")
                iv = np.where(m != 0, 0.0, iv)
            s = flux_scale(hdul[f"{a}_FLUX"].header.get("BUNIT"), DEFAULT_FITS_FLUX_SCALE, path)
            scale = s if scale is None else scale
            dw = np.gradient(w)
            if f"{a}_RESOLUTION" in hdul:
                sig = _resolution_sigma(hdul[f"{a}_RESOLUTION"].data, dw)
            else:
                sig = w / (3000.0 * FWHM_SIGMA)
            waves.append(w)
            fluxes.append(f * s)
            ivars.append(iv / s**2)
            widths.append(dw)
            sigmas.append(sig)
        tid, truth = _table_truth(hdul, n, path)
    wave = np.concatenate(waves)
    order = np.argsort(wave, kind="stable")
    flux = np.concatenate(fluxes, axis=1)[:, order]
    ivar = np.concatenate(ivars, axis=1)[:, order]
    flux = np.where(ivar > 0, flux, np.where(np.isfinite(flux), flux, 0.0))
    _check_values(path, "FLUX/IVAR", flux, ivar)
    return Spectra(wave[order], flux, ivar, tid, lsf_sigma=np.concatenate(sigmas)[order],
                   pixel_width=np.concatenate(widths)[order], truth=truth)


def read_shard_spectra(path, start: int = 0, count: int | None = None) -> Spectra:
    """Read rows of a simulator shard (module doc)."""
    import h5py

    path = Path(path)
    meta = read_meta(path)
    if meta.get("domain") not in (None, "redshift", "spectra"):
        raise UserError(f"{path}: shard of domain {meta.get('domain')!r}, expected 'redshift' or 'spectra'")
    try:
        with h5py.File(path, "r") as f:
            if "flux" not in f:
                raise UserError(f"{path}: no 'flux' dataset (not a spectrum shard)")
            n = f["flux"].shape[0]
            sl = slice(start, n if count is None else start + count)
            flux = np.asarray(f["flux"][sl], dtype=np.float64)
            if "ivar" in f:
                ivar = np.asarray(f["ivar"][sl], dtype=np.float64)
            elif "noise" in f:
                sig = np.asarray(f["noise"][sl], dtype=np.float64)
                ok = np.isfinite(sig) & (sig > 0)
                ivar = np.where(ok, 1.0 / np.where(ok, sig, 1.0) ** 2, 0.0)
            else:
                raise UserError(f"{path}: no 'noise' or 'ivar' dataset")
            params = np.asarray(f["params"][sl]) if "params" in f else None
            names = json.loads(f["params"].attrs["names"]) if params is not None else []
    except OSError as exc:
        raise UserError(f"{path}: corrupt shard ({exc})") from None
    wave = meta.get("wave")
    if wave is None:
        raise UserError(f"{path}: no 'wave' attribute (wavelength grid)")
    wave = np.asarray(wave, dtype=np.float64).ravel()
    if flux.ndim != 2 or flux.shape[1] != wave.size or ivar.shape != flux.shape:
        raise UserError(f"{path}: flux {flux.shape} / noise {ivar.shape} do not match {wave.size} wavelengths")
    inst = meta.get("instrument") or {}
    res = inst.get("resolution") if isinstance(inst, dict) else None
    tid = (params[:, names.index("targetid")].astype(np.int64) if params is not None and "targetid" in names
           else start + np.arange(len(flux), dtype=np.int64))
    flux = np.where(ivar > 0, flux, np.where(np.isfinite(flux), flux, 0.0))
    _check_values(path, "flux/noise", flux, ivar)
    truth = {"params": params, "names": names} if params is not None else {}
    dw = inst.get("dw") if isinstance(inst, dict) else None
    return Spectra(wave, flux, ivar, tid, lsf_sigma=wave / (float(res) * FWHM_SIGMA) if res else None,
                   pixel_width=np.full(wave.size, float(dw)) if dw else None, truth=truth)


def subset(sp: Spectra, start: int, count: int) -> Spectra:
    """Rows ``start:start+count`` of ``sp`` (same grid and LSF)."""
    sl = slice(start, start + count)
    truth = {"params": sp.truth["params"][sl], "names": sp.truth["names"]} if sp.truth else {}
    return Spectra(sp.wave, sp.flux[sl], sp.ivar[sl], sp.targetid[sl], sp.lsf_sigma, sp.pixel_width, truth)


def open_input(path, chunk_size: int = 1000) -> list[Chunk]:
    """Describe an input as chunks of at most ``chunk_size`` spectra (headers validated now).

    Parameters
    ----------
    path : path-like
        Text spectrum, FITS batch, DESI coadd, survey spectrum file (see
        :mod:`astrolearn.redshift.readers`), shard file or directory of shards.
    chunk_size : int
        Spectra per chunk (one output file each).
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    chunks: list[Chunk] = []
    if path.is_dir() or path.suffix.lower() in (".h5", ".hdf5"):
        row = 0
        for shard in list_shards(path):
            try:
                with h5py.File(shard, "r") as f:
                    if "flux" not in f:
                        raise UserError(f"{shard}: no 'flux' dataset (not a spectrum shard)")
                    n = int(f["flux"].shape[0])
            except OSError as exc:
                raise UserError(f"{shard}: not a readable HDF5 file ({exc.__class__.__name__})") from None
            read_meta(shard)
            for s in range(0, n, chunk_size):
                c = min(chunk_size, n - s)
                chunks.append(Chunk(shard, "shard", s, c, row, lambda ch: read_shard_spectra(ch.source, ch.start, ch.count)))
                row += c
        return chunks
    name = path.name.lower()
    if name.endswith((".fits", ".fit", ".fits.gz", ".fz")):
        kind = fits_kind(path)
        if kind not in ("desi", "fits"):
            from .readers import read_survey

            sp = read_survey(path, kind)
            n = len(sp.flux)
            return [Chunk(path, kind, s, min(chunk_size, n - s), s, lambda ch, sp=sp: subset(sp, ch.start, ch.count))
                    for s in range(0, n, chunk_size)]
        if kind == "desi":
            sp = read_desi_coadd(path)
            return [Chunk(path, "desi", 0, len(sp.flux), 0, lambda ch, sp=sp: sp)]
        with _open_fits(path) as hdul:
            shape = np.shape(_hdu_data(hdul, "FLUX", path))
        n = shape[0] if len(shape) == 2 else 1
        return [Chunk(path, "fits", s, min(chunk_size, n - s), s,
                      lambda ch: read_fits_batch(ch.source, ch.start, ch.count)) for s in range(0, n, chunk_size)]
    sp = read_text(path)
    return [Chunk(path, "text", 0, 1, 0, lambda ch, sp=sp: sp)]


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------
CHUNK_PATTERN = "zpdf-{:05d}.h5"


def write_chunk(path, result, spectra: Spectra, first_row: int, grid, attrs: dict, save_chi2: bool = False) -> Path:
    """Write the estimates of one chunk (HDF5, atomically).

    Datasets: ``targetid`` (N,), ``row`` (N,) position in the input, ``z``, ``z_err``,
    ``z_proba``, ``chi2_min``, ``npix``, ``status`` (int8; attribute ``names``),
    ``cand_z``/``cand_dz``/``cand_proba``/``cand_logpdf``/``cand_index`` (N, C),
    ``log_pdf`` (N, Z) float32 (normalised: sum of trapezoid weights x exp = 1),
    with ``save_chi2`` also ``chi2`` (N, Z) float32 and ``exact`` (N, Z) bool (chi2 computed,
    not interpolated),
    ``zgrid`` (Z,), ``coeffs`` (N, K) (attribute ``names``: line fluxes [erg/s/cm2], template
    amplitudes), and ``params`` (N, P) with attribute ``names`` = the input truth when present.
    File attributes: the grid metadata (``zmin``, ``zmax``, ``zstep``, ``sampling``, ``nz``),
    ``engine`` (JSON settings), ``source``, ``first_row``, ``astrolearn_version`` plus ``attrs``.
    """
    import h5py

    from .engine import STATUS_NAMES

    path = Path(path)
    n = len(spectra.targetid)
    with atomic_write(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            def ds(name, data, **kw):
                return f.create_dataset(name, data=data, track_times=False, **kw)

            ds("targetid", np.asarray(spectra.targetid, dtype=np.int64))
            ds("row", first_row + np.arange(n, dtype=np.int64))
            for key in ("z", "z_err", "z_proba", "chi2_min"):
                ds(key, np.asarray(getattr(result, key), dtype=np.float64))
            ds("npix", np.asarray(result.npix, dtype=np.int64))
            st = ds("status", np.asarray(result.status, dtype=np.int8))
            st.attrs["names"] = json.dumps({str(k): v for k, v in STATUS_NAMES.items()})
            c = result.candidates
            ds("cand_z", c.z)
            ds("cand_dz", c.dz)
            ds("cand_proba", c.proba)
            ds("cand_logpdf", c.log_pdf)
            ds("cand_index", c.index)
            ds("log_pdf", np.asarray(result.log_pdf, dtype=np.float32))
            if save_chi2:
                ds("chi2", np.asarray(result.chi2, dtype=np.float32))
                ds("exact", np.asarray(result.exact, dtype=bool))
            ds("zgrid", grid.z)
            co = ds("coeffs", np.asarray(result.coeffs, dtype=np.float64))
            co.attrs["names"] = json.dumps(list(result.coeff_names))
            if spectra.truth:
                p = ds("params", np.asarray(spectra.truth["params"], dtype=np.float64))
                p.attrs["names"] = json.dumps(list(spectra.truth["names"]))
            for k, v in grid.meta().items():
                f.attrs[k] = v
            f.attrs["first_row"] = int(first_row)
            f.attrs["astrolearn_version"] = __version__
            f.attrs["domain"] = "redshift"
            f.attrs["kind"] = "zpdf"
            for k, v in attrs.items():
                f.attrs[k] = json.dumps(v) if isinstance(v, (dict, list, tuple)) else v
    return path


def read_chunk(path, skip=()) -> dict:
    """Read an estimate file written by :func:`write_chunk` into a dict of arrays + ``attrs``.

    ``skip``: dataset names not to read (e.g. ``("log_pdf", "chi2", "exact")``).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            out = {k: f[k][...] for k in f.keys() if k not in skip}
            out["attrs"] = dict(f.attrs)
            for k in ("coeffs", "params"):
                if k in f:
                    out[f"{k}_names"] = json.loads(f[k].attrs["names"])
    except OSError as exc:
        raise UserError(f"{path}: not a readable HDF5 file ({exc.__class__.__name__})") from None
    if out["attrs"].get("kind") != "zpdf":
        raise UserError(f"{path}: not a redshift estimate file")
    return out


def summary_table(chunks: list[dict]) -> dict:
    """Columns of ``redshifts.csv`` from chunk dicts (input order).

    ``targetid, z, z_err, z_proba, status`` then ``chi2_min, npix``, the candidates
    ``z_cand{k}, proba_cand{k}`` (k = 1..C) and ``z_true`` when the truth has a ``z`` column.
    """
    from .engine import STATUS_NAMES

    chunks = sorted(chunks, key=lambda c: int(c["attrs"]["first_row"]))
    cols: dict = {"targetid": np.concatenate([c["targetid"] for c in chunks])}
    for k in ("z", "z_err", "z_proba"):
        cols[k] = np.concatenate([c[k] for c in chunks])
    cols["status"] = np.array([STATUS_NAMES[int(s)] for c in chunks for s in c["status"]])
    cols["chi2_min"] = np.concatenate([c["chi2_min"] for c in chunks])
    cols["npix"] = np.concatenate([c["npix"] for c in chunks])
    ncand = chunks[0]["cand_z"].shape[1]
    cz = np.concatenate([c["cand_z"] for c in chunks])
    cp = np.concatenate([c["cand_proba"] for c in chunks])
    for k in range(ncand):
        cols[f"z_cand{k + 1}"] = cz[:, k]
        cols[f"proba_cand{k + 1}"] = cp[:, k]
    if all("params" in c and "z" in c["params_names"] for c in chunks):
        cols["z_true"] = np.concatenate([c["params"][:, c["params_names"].index("z")] for c in chunks])
    return cols


def write_summary(out_dir, cols: dict) -> tuple[Path, Path]:
    """Write ``redshifts.csv`` and ``redshifts.fits`` atomically."""
    from astropy.table import Table

    out_dir = Path(out_dir)
    csv, fits_path = out_dir / "redshifts.csv", out_dir / "redshifts.fits"
    names = list(cols)
    n = len(cols["targetid"])

    def fmt(v):
        if isinstance(v, (str, np.str_)):
            return str(v)
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        return "nan" if not math.isfinite(float(v)) else repr(float(v))

    with atomic_write(fits_path) as tmp:
        Table({k: np.asarray(v) for k, v in cols.items()}).write(tmp, format="fits")
    with atomic_write(csv) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(",".join(names) + "\n")
            for i in range(n):
                fh.write(",".join(fmt(cols[k][i]) for k in names) + "\n")
    return csv, fits_path
