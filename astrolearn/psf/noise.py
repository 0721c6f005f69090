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


def variance_from_image(images: np.ndarray, instrument: Instrument) -> np.ndarray:
    """Per-pixel noise variance [e-²] estimated from sky-subtracted frames (photon + sky + read)."""
    return np.clip(images, 0, None) + sky_electrons_per_pixel(instrument) + read_noise_electrons(instrument) ** 2
