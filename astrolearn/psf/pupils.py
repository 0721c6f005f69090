"""Pupil geometries and static-aberration bases, generated in code.

Conventions: a pupil array is (n, n) with its centre at ((n-1)/2, (n-1)/2) pixels; a pixel
is ``pixel_m`` metres; values are transmissions in [0, 1]. Static bases are (K, n, n) cubes in
nm per unit coefficient, zero outside the pupil, zero mean and 1 nm RMS over it.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError


def _coords(n: int, pixel_m: float):
    c = (np.arange(n) - (n - 1) / 2) * pixel_m
    return np.meshgrid(c, c, indexing="ij")  # (x along axis 0, y along axis 1) [m]


def circular_pupil(n, pixel_m, diameter_m, obscuration):
    """Disk with a central obscuration (maoppy's binary convention: r < R, r >= occ R)."""
    x, y = _coords(n, pixel_m)
    r = np.hypot(x, y)
    radius = diameter_m / 2
    return ((r < radius) & (r >= radius * obscuration)).astype(float)


PUPILS = {"circular": circular_pupil}


def make_pupil(spec: dict, n: int, pixel_m: float, diameter_m: float, obscuration: float) -> np.ndarray:
    """Pupil transmission (n, n) for the geometry ``spec['kind']``."""
    kind = spec.get("kind", "circular")
    if kind not in PUPILS:
        raise UserError(f"unknown pupil kind {kind!r} (known: {', '.join(PUPILS)})")
    options = {k: v for k, v in spec.items() if k not in ("kind", "min_pixels", "scale")}
    return PUPILS[kind](n, pixel_m, diameter_m, obscuration, **options)


def normalise_basis(modes: np.ndarray, pupil: np.ndarray) -> np.ndarray:
    """Remove the pupil-weighted mean of each mode and scale it to 1 nm RMS over the pupil."""
    w = pupil / pupil.sum()
    modes = modes - np.tensordot(modes, w, axes=([1, 2], [0, 1]))[:, None, None]
    modes = modes * (pupil > 0)
    rms = np.sqrt(np.tensordot(modes**2, w, axes=([1, 2], [0, 1])))
    if np.any(rms == 0):
        raise UserError("static basis has a mode that is zero over the pupil")
    return modes / rms[:, None, None]


def basis_from_fits(path: str, pupil: np.ndarray) -> np.ndarray:
    """User basis: a FITS cube (K, h, w) of modes in nm over the pupil, resampled to the pupil grid."""
    from scipy.ndimage import zoom

    from ..io.fits import read_fits

    cube = np.asarray(read_fits(path), dtype=float)
    if cube.ndim == 2:
        cube = cube[None]
    if cube.ndim != 3 or cube.shape[1] != cube.shape[2]:
        raise UserError(f"{path}: static basis must be a cube (K, n, n), got shape {cube.shape}")
    n = pupil.shape[0]
    cube = np.stack([zoom(np.nan_to_num(m), n / m.shape[0], order=1) for m in cube])
    return cube * (pupil > 0)


def _no_basis(spec, pupil, pixel_m, diameter_m):
    return np.zeros((0,) + pupil.shape)


def _file_basis(spec, pupil, pixel_m, diameter_m):
    # A user basis is taken as given (modes in nm); only masked to the pupil.
    return basis_from_fits(spec["path"], pupil)


STATIC_BASES = {"none": _no_basis, "file": _file_basis}


def make_static_basis(spec: dict, pupil: np.ndarray, pixel_m: float, diameter_m: float) -> np.ndarray:
    """Static-aberration basis (K, n, n) [nm per unit coefficient] for ``spec['kind']``."""
    kind = spec.get("kind", "none")
    if kind not in STATIC_BASES:
        raise UserError(f"unknown static basis kind {kind!r} (known: {', '.join(STATIC_BASES)})")
    return STATIC_BASES[kind](spec, pupil, pixel_m, diameter_m)


def even_modes(basis: np.ndarray, pupil: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Boolean (K,): modes with phi(-r) = phi(r) on a centro-symmetric pupil.

    For such modes a single in-focus image cannot tell mu from -mu: phi(r) and -phi(-r)
    give the same PSF, and -phi(-r) = -phi(r) when phi is even.
    """
    flipped = basis[:, ::-1, ::-1]
    scale = np.sqrt((basis**2).mean(axis=(1, 2))) + 1e-300
    return np.abs(basis - flipped).max(axis=(1, 2)) < tol * scale * 1e3
