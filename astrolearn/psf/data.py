"""Reading user PSF images (FITS image/cube or simulated shard) into fit-ready arrays."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .instruments import Instrument
from .noise import variance_from_image


@dataclass
class PsfImages:
    """Frames cropped to the model size, in photo-electrons, with inverse-variance weights."""

    path: Path
    images: np.ndarray  # (N, npix, npix) [e-], NaNs replaced by 0
    weights: np.ndarray  # (N, npix, npix) [1/e-²], 0 on invalid pixels
    gain: float  # e-/ADU applied to the file's values
    offsets: np.ndarray  # (N, 2) (y, x) position in the file of the cut's pixel (0, 0)
    truth: dict | None = None  # truth columns when read from a simulated shard

    def add_position_columns(self, table: dict, npix: int) -> dict:
        """Add ``x``/``y``: the fitted PSF centre in the file's pixel coordinates (0-based)."""
        table["x"] = self.offsets[:, 1] + npix // 2 + np.asarray(table["dx"])
        table["y"] = self.offsets[:, 0] + npix // 2 + np.asarray(table["dy"])
        return table


def crop_around_peak(cube: np.ndarray, npix: int):
    """Cut (N, npix, npix) frames centred on each frame's brightest pixel (NaN where outside).

    Frames already of the model's size are kept as they are (as the training frames were).
    Returns the frames and, for each, the (y, x) file position of the cut's pixel (0, 0).
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


def load_psf_images(path, instrument: Instrument, gain: float | None = None, weighting: str = "noise") -> PsfImages:
    """Read a FITS image/cube (values in ADU) or a simulated shard (values in e-).

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
        used_gain = gain if gain is not None else _header_gain(path, instrument)
        cube = cube * used_gain
    if cube.ndim == 2:
        cube = cube[None]
    if cube.ndim != 3:
        raise UserError(f"{path}: expected an image or a cube (N, H, W), got shape {cube.shape}")
    for i, frame in enumerate(cube):
        if not np.isfinite(frame).any():
            raise UserError(f"{path}: frame {i} has no finite pixel")
        if not np.nansum(frame) > 0:
            raise UserError(f"{path}: frame {i} has no signal (its pixels sum to {np.nansum(frame):.3g})")
    cube, offsets = crop_around_peak(cube, instrument.npix)
    valid = np.isfinite(cube)
    images = np.where(valid, cube, 0.0)
    if weighting == "noise":
        if not instrument.detector:
            raise UserError(f"instrument {instrument.name}: no detector noise model; use --weights uniform")
        weights = 1.0 / variance_from_image(images, instrument)
    elif weighting == "uniform":
        weights = np.ones_like(images) / np.maximum(images.max(axis=(1, 2), keepdims=True), 1e-30) ** 2
    else:
        raise UserError(f"unknown weighting {weighting!r} (noise, uniform)")
    return PsfImages(path, images, weights * valid, used_gain, offsets, truth)



def _header_gain(path, instrument: Instrument) -> float:
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-standard headers: see io.fits.read_fits
            header = fits.getheader(path, ignore_missing_simple=True)
        if "GAIN" in header and float(header["GAIN"]) > 0:
            return float(header["GAIN"])
    except (OSError, ValueError, TypeError):
        pass
    return float(instrument.detector.get("gain_e_per_adu", 1.0))
