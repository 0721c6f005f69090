"""FITS reading with one-line errors for users."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import UserError


def read_fits(path, hdu: int | str | None = None) -> np.ndarray:
    """Data of the first HDU holding an array (or of ``hdu``), as a float64 array.

    Non-standard headers (e.g. NIRC2's missing SIMPLE card) are accepted.
    """
    from astropy.io import fits

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    try:
        # Astropy's warnings on non-standard headers (NIRC2 pads with null bytes) or truncated
        # files would precede our one-line message; the data is what matters here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, ignore_missing_simple=True, memmap=False) as hdul:
                if hdu is not None:
                    data = hdul[hdu].data
                else:
                    data = next((h.data for h in hdul if h.data is not None and getattr(h, "is_image", True)), None)
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise UserError(f"{path}: not a readable FITS file ({exc})") from None
    if data is None:
        raise UserError(f"{path}: no image data in the FITS file")
    return np.asarray(data, dtype=np.float64)
