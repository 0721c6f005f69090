"""Reading user PSF images (FITS image/cube or simulated shard) into fit-ready arrays."""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .instruments import Instrument
from .noise import frame_units, variance_from_image


#: Relative tolerance on header wavelengths and pixel scales against the instrument model.
HEADER_TOLERANCE = 0.03


@dataclass
class PsfImages:
    """Frames cropped to the model size, in photo-electrons, with inverse-variance weights."""

    path: Path
    images: np.ndarray  # (N, npix, npix) [e-], masked pixels replaced by 0
    weights: np.ndarray  # (N, npix, npix) [1/e-²], 0 on masked pixels
    gain: float  # e-/ADU applied to the file's values
    offsets: np.ndarray  # (N, 2) (y, x) position in the file of the cut's pixel (0, 0)
    truth: dict | None = None  # truth columns when read from a simulated shard
    noise_scale: np.ndarray | None = None  # (N,) image units per e- of the noise model (1: e-; NaN: uniform weights)

    @property
    def n_masked(self) -> np.ndarray:
        """(N,) pixels of each cut without data (weight 0): non-finite in the file or beyond its edge."""
        return (self.weights == 0).sum(axis=(1, 2))

    def add_frame_columns(self, table: dict, npix: int) -> dict:
        """Add ``x``/``y`` (PSF centre in the file's pixel coordinates, 0-based), ``n_masked``, ``noise_scale``."""
        table["x"] = self.offsets[:, 1] + npix // 2 + np.asarray(table["dx"])
        table["y"] = self.offsets[:, 0] + npix // 2 + np.asarray(table["dy"])
        table["n_masked"] = self.n_masked
        table["noise_scale"] = np.ones(len(self.images)) if self.noise_scale is None else self.noise_scale
        return table


def min_frame_side(instrument: Instrument) -> int:
    """Smallest frame side [pixels] the instrument's model can be fitted to.

    The PSFAO19 model tells r0 from the seeing halo, which starts at the AO control radius
    (nact - 1) / 2 lambda/D from the peak: a frame must reach it on both sides, so its side must
    be at least twice that radius in pixels (lambda/D = ``instrument.sampling`` pixels). A
    frame need not exceed the model's own ``npix``, which bounds the requirement (IRDIS: its
    88-pixel control radius lies outside the 128-pixel model frame).
    """
    radius = (instrument.nact - 1) / 2 * instrument.sampling
    return min(instrument.npix, 2 * math.ceil(radius))


def _core_radius(instrument: Instrument) -> float:
    """Radius [pixels] of the PSF core: the first dark ring of the Airy pattern, 1.22 lambda/D."""
    return 1.22 * instrument.sampling


def crop_around_peak(cube: np.ndarray, npix: int):
    """Cut (N, npix, npix) frames centred on each frame's brightest pixel (NaN where outside).

    Frames already of the model's size are kept as they are (as the training frames were).
    NaN pixels are ignored in the search for the peak (the caller turns every non-finite value
    into NaN). Returns the frames and, for each, the (y, x) file position of the cut's pixel (0, 0).
    """
    n, h, w = cube.shape
    if (h, w) == (npix, npix):
        return cube.copy(), np.zeros((n, 2), dtype=int)
    out = np.full((n, npix, npix), np.nan)
    offsets = np.zeros((n, 2), dtype=int)
    for i, frame in enumerate(cube):
        iy, ix = np.unravel_index(np.nanargmax(frame), frame.shape)
        y0, x0 = iy - npix // 2, ix - npix // 2
        ys, xs = slice(max(y0, 0), min(y0 + npix, h)), slice(max(x0, 0), min(x0 + npix, w))
        out[i, ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = frame[ys, xs]
        offsets[i] = y0, x0
    return out, offsets


def load_psf_images(path, instrument: Instrument, gain: float | None = None, weighting: str = "noise",
                    force: bool = False) -> PsfImages:
    """Read a FITS image/cube (values in ADU) or a simulated shard (values in e-).

    Non-finite pixels (NaN, +-inf: bad or saturated pixels) are masked: weight 0, never used to
    find the peak; ``PsfImages.n_masked`` counts them per frame.

    Parameters
    ----------
    path : path-like
        ``.fits``/``.fit``/``.fits.gz`` file, or ``.h5`` shard made by ``astrolearn psf simulate``.
    instrument : Instrument
        The frames must match its pixel scale; they are cropped to its ``npix`` around the peak.
    gain : float, optional
        e-/ADU for FITS input; default: header ``GAIN`` keyword, else the preset's detector gain.
    weighting : {"noise", "uniform"}
        Inverse-variance weights from photon + sky + read noise, or uniform weights.
    force : bool
        Accept a FITS header that contradicts the instrument (see :func:`check_header`),
        with a warning on stderr.

    Raises
    ------
    UserError
        On an unreadable file, a frame smaller than :func:`min_frame_side`, a frame without
        signal or with more than half of its core (1.22 lambda/D around the peak) masked, or a
        header contradicting the instrument (without ``force``).
    """
    path = Path(path)
    truth = None
    if path.suffix in (".h5", ".hdf5"):
        from ..io.shards import read_shard

        shard = read_shard(path, instrument=instrument.name, domain="psf")
        if "images" not in shard.arrays:
            raise UserError(f"{path}: shard has no 'images' dataset")
        made = shard.meta.get("instrument", {})
        if abs(made.get("wavelength_um", instrument.wavelength_um) - instrument.wavelength_um) > 1e-9:
            raise UserError(f"{path}: shard made at {made['wavelength_um']} um, model at {instrument.wavelength_um} um")
        cube, used_gain = shard.arrays["images"].astype(np.float64), 1.0
        truth = {name: shard.params[:, i] for i, name in enumerate(shard.names)}
    else:
        from ..io.fits import read_fits

        cube = read_fits(path)
        header = _read_header(path)
        check_header(path, header, instrument, force)
        used_gain = gain if gain is not None else _header_gain(header, instrument)
        cube = cube * used_gain
    if cube.ndim == 2:
        cube = cube[None]
    if cube.ndim != 3:
        raise UserError(f"{path}: expected an image or a cube (N, H, W), got shape {cube.shape}")
    side = min_frame_side(instrument)
    if min(cube.shape[1:]) < side:
        h, w = cube.shape[1:]
        raise UserError(f"{path}: frames are {h}x{w} pixels; {instrument.name} needs at least {side}x{side} "
                        f"(the AO control radius, {(instrument.nact - 1) / 2:g} lambda/D, on both sides of the peak)")
    cube = np.where(np.isfinite(cube), cube, np.nan)
    for i, frame in enumerate(cube):
        if np.isnan(frame).all():
            raise UserError(f"{path}: frame {i} has no finite pixel")
        if not np.nansum(frame) > 0:
            raise UserError(f"{path}: frame {i} has no signal (its pixels sum to {np.nansum(frame):.3g})")
    cube, offsets = crop_around_peak(cube, instrument.npix)
    valid = np.isfinite(cube)
    _check_cores(path, valid, instrument)
    images = np.where(valid, cube, 0.0)
    if weighting == "noise":
        if not instrument.detector:
            raise UserError(f"instrument {instrument.name}: no detector noise model; use --weights uniform")
        # A simulated shard is in e- by construction; a file's units are checked on its noise floor.
        units = np.ones(len(images)) if truth is not None else frame_units(images, valid, instrument)
        _warn_units(path, units, used_gain)
        weights = 1.0 / variance_from_image(images, instrument, units)
    elif weighting == "uniform":
        units = np.full(len(images), np.nan)  # no noise model
        weights = np.ones_like(images) / np.maximum(images.max(axis=(1, 2), keepdims=True), 1e-30) ** 2
    else:
        raise UserError(f"unknown weighting {weighting!r} (noise, uniform)")
    return PsfImages(path, images, weights * valid, used_gain, offsets, truth, units)


def _warn_units(path, units: np.ndarray, gain: float) -> None:
    """One line on stderr naming the frames whose noise floor says they are not in photo-electrons."""
    off = np.flatnonzero(units != 1)
    if not len(off):
        return
    frames = ", ".join(str(i) for i in off[:5]) + (f" ... ({len(off)} frames)" if len(off) > 5 else "")
    print(f"astrolearn: warning: {path}: frame(s) {frames}: noise floor {np.median(units[off]):.3g} times the "
          f"detector's sky + read noise at gain {gain:g} e-/ADU, so not photo-electrons; weights and errors use "
          "the noise measured in the frame (noise_scale column)", file=sys.stderr)


def _check_cores(path, valid: np.ndarray, instrument: Instrument) -> None:
    """Refuse frames whose core (1.22 lambda/D around the cut's centre) is more than half masked."""
    npix = valid.shape[-1]
    yy, xx = np.mgrid[:npix, :npix] - npix // 2
    core = np.hypot(yy, xx) <= _core_radius(instrument)
    masked = (~valid & core).sum(axis=(1, 2))
    bad = np.flatnonzero(masked > core.sum() / 2)
    if len(bad):
        i = bad[0]
        raise UserError(f"{path}: frame {i} has {masked[i]} of the {core.sum()} pixels of its core "
                        "(1.22 lambda/D around the peak) masked (not finite)")


def _read_header(path):
    """Primary FITS header, or ``None`` when it cannot be read (the data was read already)."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-standard headers: see io.fits.read_fits
            return fits.getheader(path, ignore_missing_simple=True)
    except (OSError, ValueError, TypeError):
        return None


def check_header(path, header, instrument: Instrument, force: bool = False) -> None:
    """Refuse a FITS frame whose header contradicts the instrument model.

    The preset's ``header`` section lists what its frames say: ``match`` (keyword -> text,
    compared without case and surrounding spaces, e.g. ``TELESCOP: KECK II``), and
    ``wavelength_um`` / ``pixel_scale_mas`` (keywords holding that quantity, in that unit; the
    first one present is compared with the model's value, within ``HEADER_TOLERANCE``).
    Keywords absent from the header are not checked.

    Parameters
    ----------
    path : path-like
        The file (named in the message).
    header : astropy.io.fits.Header or None
        Its header; ``None``: nothing to check.
    instrument : Instrument
        The model the frame is to be fitted with (at its wavelength, see ``--wavelength``).
    force : bool
        Print the contradiction as a warning on stderr instead of raising.
    """
    expected = instrument.header
    if header is None or not expected:
        return
    problems = []
    for key, value in (expected.get("match") or {}).items():
        if key in header and str(header[key]).strip().upper() != str(value).strip().upper():
            problems.append(f"{key} = {str(header[key]).strip()!r}, instrument {instrument.name} expects {value!r}")
    for quantity, model, unit, option in (("wavelength_um", instrument.wavelength_um, "um", "--wavelength"),
                                          ("pixel_scale_mas", instrument.pixel_scale_mas, "mas", None)):
        key = next((k for k in expected.get(quantity) or [] if k in header), None)
        if key is None:
            continue
        try:
            value = float(header[key])
        except (TypeError, ValueError):
            continue  # not a number: says nothing about the quantity
        if abs(value / model - 1) > HEADER_TOLERANCE:
            hint = f"; set the model's with {option}" if option else ""
            problems.append(f"{key} = {value:g} {unit}, the {instrument.name} model is at {model:g} {unit}{hint}")
    if not problems:
        return
    text = f"{path}: header " + "; ".join(problems)
    if not force:
        raise UserError(f"{text} (use --force to go on anyway)")
    print(f"astrolearn: warning: {text} (going on: --force)", file=sys.stderr)


def _header_gain(header, instrument: Instrument) -> float:
    """e-/ADU: the header's ``GAIN`` when positive, else the preset's detector gain."""
    try:
        if header is not None and "GAIN" in header and float(header["GAIN"]) > 0:
            return float(header["GAIN"])
    except (ValueError, TypeError):
        pass
    return float(instrument.detector.get("gain_e_per_adu", 1.0))
