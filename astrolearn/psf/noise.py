"""Detector noise for AO images: photon (Poisson) + read (Gaussian) noise, sky subtracted.

All quantities in photo-electrons (e-). Defaults come from the instrument preset's
``detector`` section (NIRC2: zero point 25.44 mag for 1 e-/s, 0.5 s x 50 coadds, read noise
60 e- per read x sqrt(50) per frame, sky 13.6 mag/arcsec²).
"""

from __future__ import annotations

import math

import numpy as np

from .instruments import Instrument


def total_exposure_s(detector: dict) -> float:
    return detector["exposure_s"] * detector["coadds"]


def star_electrons(magnitude, detector: dict):
    """Total photo-electrons from a star of ``magnitude`` over all coadds."""
    return 10 ** (-0.4 * (np.asarray(magnitude) - detector["zero_point_mag"])) * total_exposure_s(detector)


def sky_electrons_per_pixel(instrument: Instrument) -> float:
    """Sky photo-electrons per pixel over all coadds."""
    det = instrument.detector
    pixel_arcsec2 = (instrument.pixel_scale_mas * 1e-3) ** 2
    return 10 ** (-0.4 * (det["sky_mag_arcsec2"] - det["zero_point_mag"])) * total_exposure_s(det) * pixel_arcsec2


def read_noise_electrons(instrument: Instrument) -> float:
    """Read noise of a co-added frame [e- RMS]: per-read noise x sqrt(coadds)."""
    det = instrument.detector
    return det["read_noise_e"] * math.sqrt(det["coadds"])


def add_noise(images: np.ndarray, instrument: Instrument, rng: np.random.Generator) -> np.ndarray:
    """Noisy, sky-subtracted frames from noiseless ones (N, H, W) [e-]."""
    sky = sky_electrons_per_pixel(instrument)
    ron = read_noise_electrons(instrument)
    expected = np.clip(images, 0, None) + sky
    return rng.poisson(expected).astype(np.float64) + rng.normal(0.0, ron, images.shape) - sky


def add_noise_torch(images, instrument: Instrument, generator):
    """:func:`add_noise` in torch, on the device of ``images`` (N, H, W) [e-], drawn from ``generator``."""
    import torch

    sky = sky_electrons_per_pixel(instrument)
    ron = read_noise_electrons(instrument)
    photons = torch.poisson(images.clamp(min=0) + sky, generator=generator)
    read = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return photons + ron * read - sky


#: A frame whose measured noise floor is within this factor of the preset's (sky + read noise)
#: is taken to be in photo-electrons (a real NIRC2 frame: 0.7; a frame normalised to sum 1: 1e-8).
FLOOR_TOLERANCE = 3.0


def variance_from_image(images: np.ndarray, instrument: Instrument, unit=1.0) -> np.ndarray:
    """Per-pixel noise variance [unit²] estimated from sky-subtracted frames (photon + sky + read).

    ``unit``: image units per photo-electron, a number or one per frame (N,) (1: frames in e-).
    Frames in k e- units have variance k x image (photons) + k² x (sky + read noise in e-).
    """
    unit = np.asarray(unit, dtype=float)
    unit = unit[:, None, None] if unit.ndim else unit
    floor = sky_electrons_per_pixel(instrument) + read_noise_electrons(instrument) ** 2
    return unit * np.clip(images, 0, None) + unit**2 * floor


def noise_floor(images: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixel-to-pixel noise of each frame (N,) [image units], 0 for a frame without noise.

    1.4826 x the median absolute deviation of the differences between horizontally adjacent
    valid pixels, / sqrt(2): the PSF's smooth structure cancels in the differences and the few
    steep ones of the core do not move the median.
    """
    out = np.zeros(len(images))
    for i, (frame, ok) in enumerate(zip(images, valid)):
        d = (frame[:, 1:] - frame[:, :-1])[ok[:, 1:] & ok[:, :-1]]
        if d.size:
            out[i] = 1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2)
    return out


def frame_units(images: np.ndarray, valid: np.ndarray, instrument: Instrument) -> np.ndarray:
    """Image units per photo-electron (N,) that the frames' noise floor implies.

    1 when a frame's floor (:func:`noise_floor`) is within ``FLOOR_TOLERANCE`` of the preset's
    sky + read noise [e-] (the frame is in photo-electrons as given), or when it has no
    measurable noise; otherwise the ratio of the two (a frame normalised to sum 1, or read with
    a wrong gain).
    """
    measured = noise_floor(images, valid)
    expected = math.sqrt(sky_electrons_per_pixel(instrument) + read_noise_electrons(instrument) ** 2)
    ratio = measured / expected
    inside = (ratio == 0) | ((ratio >= 1 / FLOOR_TOLERANCE) & (ratio <= FLOOR_TOLERANCE))
    return np.where(inside, 1.0, ratio)
