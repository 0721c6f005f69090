"""Reading the images of ``cophase predict`` / ``cophase fit``: a FITS cube or a simulated shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .optics import Optics


def load_images(path, optics: Optics) -> np.ndarray:
    """Images (N, C, npix, npix) [e-] of a FITS file or a simulated ``.h5`` shard.

    A FITS file holds one measurement (C, H, W) or several (N, C, H, W), C = ``optics.channels``
    (channel 0 in focus, 1 defocused by the optics' diversity); a single-channel measurement may
    be a plain (H, W) image. Values are photo-electrons, background subtracted.
    """
    path = Path(path)
    if path.suffix in (".h5", ".hdf5"):
        from ..io.shards import read_shard

        images = read_shard(path, domain="cophase").arrays.get("images")
        if images is None:
            raise UserError(f"{path}: no 'images' array")
    else:
        from ..io.fits import read_fits

        images = read_fits(path)
        if images.ndim == 2 and optics.channels == 1:
            images = images[None, None]
        elif images.ndim == 3:
            images = images[None]
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4:
        raise UserError(f"{path}: expected (C,H,W) or (N,C,H,W) images, got shape {images.shape}")
    if not np.isfinite(images).all():
        raise UserError(f"{path}: images hold NaN or infinite values")
    if (images.sum(axis=(-2, -1)) <= 0).any():
        raise UserError(f"{path}: an image has no positive flux")
    return images
