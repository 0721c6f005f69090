"""Pupil geometries and static-aberration bases, generated in code.

Conventions: a pupil array is (n, n) with its centre at ((n-1)/2, (n-1)/2) pixels; a pixel
is ``pixel_m`` metres; values are transmissions in [0, 1]. Static bases are (K, n, n) cubes in
nm per unit coefficient, zero outside the pupil, zero mean and 1 nm RMS over it.

Coordinates: ``x`` runs along array axis 0 (rows) and ``y`` along axis 1 (columns); angles
are counted from +x towards +y. "Horizontal" below means along axis 1, as an image of the
array appears with the usual display (rows downwards, columns to the right).

Geometries (see ``docs/pupils.md`` for how they were fitted to the reference masks):

- ``circular``: disk with a circular central obscuration (maoppy's binary convention).
- ``keck_hex``: Keck II primary, 36 hexagonal segments in 3 rings around a missing centre,
  flat sides horizontal, six spider arms; grey (area-coverage) edges.
- ``vlt``: VLT Unit Telescope, disk + central obscuration + four spiders that leave the
  secondary from two points on either side of the centre; grey edges.
- ``file``: a measured mask read from a FITS file (its whole array spans the diameter),
  area-weighted onto the pupil grid; the masks shipped in ``masks/`` are named by file name.

Static bases: ``none``, ``file`` (a user FITS cube), ``keck_segment_zernike`` (Noll Zernike
modes averaged over each Keck segment: pure segment pistons) and ``petal`` (piston/tip/tilt of
the four VLT pupil quadrants: the low-wind effect).
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import numpy as np

from ..errors import UserError

_SQRT3 = math.sqrt(3.0)

# ---- reference geometry -------------------------------------------------------------------
# Keck II seen through the NIRC2 "largehex" pupil stop, with D = 10.5 m spanning the side of
# the reference mask keck_pupil_largeHex_272px.fits (P3 resamples its whole array onto D).
# Fitted to that mask (IoU 0.981, docs/pupils.md); the mechanical primary (1.8 m segments
# across corners, 10.95 m across) is NOT used so that D, segment size and mask stay
# consistent. Same values as presets/nirc2.yaml.
KECK_SEGMENT_FLAT_TO_FLAT_M = 1.468  # segment pitch (flat to flat, gaps included) [m]
KECK_CENTRAL_HOLE_FLAT_TO_FLAT_M = 2.54  # hexagonal central hole of the stop [m]
KECK_SPIDER_WIDTH_M = 0.0386  # one mask pixel [m]
KECK_RINGS = 3  # 6 + 12 + 18 = 36 segments

# VLT UT spiders (ESO ERIS pupil document VLT-SPE-AES-11310-0006, as used by HCIPy): each
# pair of spiders leaves the M2 from a point 0.5244 m from the centre (perpendicular offset
# 0.4045 m) and the two spiders of a pair make 101 degrees. Orientation fitted to the SPHERE
# Lyot stop ALC2LyotStop_measured.fits: the attachment points lie on the horizontal axis.
VLT_SPIDER_WIDTH_M = 0.05
VLT_SPIDER_ATTACH_M = 0.5244
VLT_SPIDER_HALF_ANGLE_DEG = 50.5
VLT_ROTATION_DEG = 0.0


# ---- coordinates and helpers --------------------------------------------------------------
def _coords(n: int, pixel_m: float):
    c = (np.arange(n) - (n - 1) / 2) * pixel_m
    return np.meshgrid(c, c, indexing="ij")  # (x along axis 0, y along axis 1) [m]


def _rotate(x, y, rotation_deg: float):
    """Coordinates in the frame of a geometry rotated by ``rotation_deg`` (x towards y)."""
    if rotation_deg == 0:
        return x, y
    t = math.radians(rotation_deg)
    c, s = math.cos(t), math.sin(t)
    return c * x + s * y, -s * x + c * y


def _supersampled(n: int, pixel_m: float, supersample: int, inside) -> np.ndarray:
    """Area coverage of each pixel by the shape ``inside(x, y) -> bool``.

    The shape is sampled on ``supersample`` x ``supersample`` points per pixel, symmetric
    about the pixel centre, so a centro-symmetric shape gives a centro-symmetric array.
    """
    m = int(supersample)
    if m < 1:
        raise UserError(f"pupil supersample must be >= 1, got {supersample}")
    c = (np.arange(n * m) - (n * m - 1) / 2) * (pixel_m / m)
    out = np.empty((n, n))
    rows = max(1, 2**17 // (n * m * m))  # pixel rows per block: temporaries stay in cache
    for i in range(0, n, rows):
        x, y = np.meshgrid(c[i * m:(i + rows) * m], c, indexing="ij")
        out[i:i + rows] = inside(x, y).reshape(-1, m, n, m).mean(axis=(1, 3))
    return out


def _hex_norm(x, y):
    """Half flat-to-flat size of the smallest hexagon (flat sides along y) holding (x, y) [m]."""
    u = 0.5 * x
    v = 0.5 * _SQRT3 * y
    return np.maximum(np.abs(x), np.maximum(np.abs(u + v), np.abs(u - v)))


def _hex_lattice(x, y, pitch_m: float):
    """Nearest centre of the triangular lattice of hexagons with flat sides along y.

    Lattice vectors (pitch, 0) and (pitch/2, pitch sqrt(3)/2): neighbours across a flat side
    are along x, i.e. the flat sides are parallel to y (horizontal). Returns the integer
    axial coordinates (a, b) of the nearest centre (cube rounding) and the offset from it [m].
    """
    b = y / (pitch_m * _SQRT3 / 2)
    a = x / pitch_m - b / 2
    c = -a - b
    ra, rb, rc = np.rint(a), np.rint(b), np.rint(c)  # rint: round half to even, odd-symmetric
    da, db, dc = np.abs(ra - a), np.abs(rb - b), np.abs(rc - c)
    fix_a = (da > db) & (da > dc)  # the coordinate with the largest rounding error is implied
    fix_b = ~fix_a & (db > dc)
    ra += fix_a * (-rb - rc - ra)  # arithmetic masks: much faster than np.where here
    rb += fix_b * (-ra - rc - rb)
    dx = x - pitch_m * (ra + rb / 2)
    dy = y - pitch_m * rb * _SQRT3 / 2
    return ra.astype(int), rb.astype(int), dx, dy


def _hex_ring(a, b):
    """Ring index (hexagonal distance from the centre) of axial lattice coordinates."""
    return (np.abs(a) + np.abs(b) + np.abs(a + b)) // 2


def _line_distance(x, y, angle_deg: float, x0=0.0, y0=0.0):
    """Distance [m] from (x, y) to the line through (x0, y0) at ``angle_deg`` from +x."""
    t = math.radians(angle_deg)
    return np.abs((x - x0) * math.sin(t) - (y - y0) * math.cos(t))


# ---- circular -----------------------------------------------------------------------------
def circular_pupil(n, pixel_m, diameter_m, obscuration):
    """Disk with a central obscuration (maoppy's binary convention: r < R, r >= occ R)."""
    x, y = _coords(n, pixel_m)
    r = np.hypot(x, y)
    radius = diameter_m / 2
    return ((r < radius) & (r >= radius * obscuration)).astype(float)


# ---- Keck ---------------------------------------------------------------------------------
def keck_segment_centres(segment_flat_to_flat_m: float = KECK_SEGMENT_FLAT_TO_FLAT_M,
                         rings: int = KECK_RINGS, rotation_deg: float = 0.0) -> np.ndarray:
    """Centres of the Keck segments, (S, 2) [m] as (x, y), S = 3 rings (rings + 1) = 36.

    Ordered by ring, then by angle from +x towards +y; this order is the segment label used
    by :func:`keck_segment_labels`.
    """
    r = np.arange(-rings, rings + 1)
    a, b = (g.ravel() for g in np.meshgrid(r, r, indexing="ij"))
    ring = _hex_ring(a, b)
    keep = (ring >= 1) & (ring <= rings)
    a, b, ring = a[keep], b[keep], ring[keep]
    x = segment_flat_to_flat_m * (a + b / 2)
    y = segment_flat_to_flat_m * b * _SQRT3 / 2
    order = np.lexsort((np.round(np.mod(np.arctan2(y, x), 2 * np.pi), 9), ring))
    t = math.radians(rotation_deg)
    xr = math.cos(t) * x - math.sin(t) * y  # geometry rotated by rotation_deg
    yr = math.sin(t) * x + math.cos(t) * y
    return np.stack([xr[order], yr[order]], axis=1)


def _keck_label_lut(rings: int) -> np.ndarray:
    """Look-up table (2 rings + 1)^2: axial (a, b) -> segment label, -1 off the 36."""
    r = np.arange(-rings, rings + 1)
    a, b = (g.ravel() for g in np.meshgrid(r, r, indexing="ij"))
    ring = _hex_ring(a, b)
    keep = (ring >= 1) & (ring <= rings)
    x = a + b / 2
    y = b * _SQRT3 / 2
    ang = np.round(np.mod(np.arctan2(y, x), 2 * np.pi), 9)
    idx = np.flatnonzero(keep)[np.lexsort((ang[keep], ring[keep]))]
    lut = np.full(a.size, -1)
    lut[idx] = np.arange(idx.size)
    return lut.reshape(2 * rings + 1, 2 * rings + 1)


def _keck_labels_at(x, y, pitch_m, rings, rotation_deg):
    """Segment label at each point (nearest lattice centre), -1 off the 36 segments."""
    a, b, dx, dy = _hex_lattice(*_rotate(x, y, rotation_deg), pitch_m)
    inside = (np.abs(a) <= rings) & (np.abs(b) <= rings)
    lut = _keck_label_lut(rings)
    labels = np.full(a.shape, -1)
    labels[inside] = lut[a[inside] + rings, b[inside] + rings]
    return labels, dx, dy


def keck_hex_pupil(n, pixel_m, diameter_m, obscuration, *,
                   segment_flat_to_flat_m: float = KECK_SEGMENT_FLAT_TO_FLAT_M,
                   gap_m: float = 0.0,
                   spider_width_m: float = KECK_SPIDER_WIDTH_M,
                   central_hole_flat_to_flat_m: float | None = KECK_CENTRAL_HOLE_FLAT_TO_FLAT_M,
                   rotation_deg: float = 0.0,
                   rings: int = KECK_RINGS,
                   supersample: int = 4) -> np.ndarray:
    """Keck II segmented pupil with grey (area-coverage) edges.

    Parameters
    ----------
    n : int
        Array side [pixels]; the pupil centre is at ((n-1)/2, (n-1)/2).
    pixel_m : float
        Pixel size [m].
    diameter_m : float
        Telescope diameter D [m]; only used when ``central_hole_flat_to_flat_m`` is None.
    obscuration : float
        Central obscuration, fraction of D; the default hole is a hexagon (same orientation
        as the segments) ``obscuration * D`` flat to flat when ``central_hole_flat_to_flat_m``
        is None.
    segment_flat_to_flat_m : float
        Segment pitch: centre-to-centre distance of neighbouring segments [m].
    gap_m : float
        Gap between neighbouring segments [m] (each segment is pitch - gap flat to flat).
    spider_width_m : float
        Width of the six spider arms (three lines through the centre, parallel to the
        segment flat sides: horizontal and +-60 degrees from it) [m]; 0 for none.
    central_hole_flat_to_flat_m : float or None
        Hexagonal central obscuration, flat to flat [m] (the NIRC2 stop's hole).
    rotation_deg : float
        Rotation of the whole geometry, from +x towards +y [deg].
    rings : int
        Segment rings around the missing central segment (3 for Keck: 36 segments).
    supersample : int
        Sub-samples per pixel side for the area coverage (4: 1/16 transmission steps).

    Returns
    -------
    numpy.ndarray
        (n, n) transmission in [0, 1], centro-symmetric about the array centre.
    """
    if central_hole_flat_to_flat_m is None:
        central_hole_flat_to_flat_m = obscuration * diameter_m
    pitch = float(segment_flat_to_flat_m)

    def inside(x, y):
        x, y = _rotate(x, y, rotation_deg)
        a, b, dx, dy = _hex_lattice(x, y, pitch)
        ring = _hex_ring(a, b)
        ok = (ring >= 1) & (ring <= rings) & (_hex_norm(dx, dy) <= (pitch - gap_m) / 2)
        ok &= _hex_norm(x, y) >= central_hole_flat_to_flat_m / 2
        if spider_width_m > 0:
            for angle in (90.0, 30.0, 150.0):  # parallel to the segment flat sides
                ok &= _line_distance(x, y, angle) >= spider_width_m / 2
        return ok

    return _supersampled(n, pixel_m, supersample, inside)


def keck_segment_labels(n, pixel_m, pupil=None, *,
                        segment_flat_to_flat_m: float = KECK_SEGMENT_FLAT_TO_FLAT_M,
                        rings: int = KECK_RINGS, rotation_deg: float = 0.0) -> np.ndarray:
    """Segment label (0..35, see :func:`keck_segment_centres`) of each pixel, -1 elsewhere.

    A pixel belongs to the segment whose centre is nearest to the pixel centre (hexagonal
    cells). With ``pupil``, pixels of zero transmission get -1 and transmitting pixels whose
    centre falls off the 36 cells (grey pixels at the outer edge or in the central hole) go to
    the nearest segment, so every transmitting pixel has a label.
    """
    x, y = _coords(n, pixel_m)
    labels, _, _ = _keck_labels_at(x, y, float(segment_flat_to_flat_m), rings, rotation_deg)
    if pupil is None:
        return labels
    labels = np.where(pupil > 0, labels, -1)
    stray = (pupil > 0) & (labels < 0)
    if stray.any():
        centres = keck_segment_centres(segment_flat_to_flat_m, rings, rotation_deg)
        d2 = (x[stray, None] - centres[:, 0]) ** 2 + (y[stray, None] - centres[:, 1]) ** 2
        labels[stray] = np.argmin(d2, axis=1)
    return labels


# ---- VLT ----------------------------------------------------------------------------------
def _vlt_spiders(attach_m, half_angle_deg):
    """The four spiders as (x0, y0, angle_deg) rays, in the unrotated frame.

    The two attachment points are on the y axis at +-attach_m; from each, two spiders leave
    outwards at +-half_angle_deg from the y axis (the geometry is centro-symmetric).
    """
    a = 90.0 - half_angle_deg  # spider angle from +x for the (0, +attach) pair
    return [(0.0, attach_m, a), (0.0, attach_m, 180.0 - a),
            (0.0, -attach_m, 180.0 + a), (0.0, -attach_m, -a)]


def vlt_pupil(n, pixel_m, diameter_m, obscuration, *,
              spider_width_m: float = VLT_SPIDER_WIDTH_M,
              spider_attach_m: float = VLT_SPIDER_ATTACH_M,
              spider_half_angle_deg: float = VLT_SPIDER_HALF_ANGLE_DEG,
              rotation_deg: float = VLT_ROTATION_DEG,
              supersample: int = 4) -> np.ndarray:
    """VLT Unit Telescope pupil with grey (area-coverage) edges.

    Parameters
    ----------
    n : int
        Array side [pixels]; the pupil centre is at ((n-1)/2, (n-1)/2).
    pixel_m : float
        Pixel size [m].
    diameter_m : float
        Pupil diameter D [m].
    obscuration : float
        Central obscuration diameter, fraction of D.
    spider_width_m : float
        Spider width [m]; 0 for none.
    spider_attach_m : float
        Distance from the centre of the two points the spider pairs leave from [m]; they
        lie on the y (horizontal) axis before rotation, inside the central obscuration.
    spider_half_angle_deg : float
        Half the angle between the two spiders of a pair [deg] (50.5: 101 degrees).
    rotation_deg : float
        Rotation of the spider pattern, from +x towards +y [deg].
    supersample : int
        Sub-samples per pixel side for the area coverage.

    Returns
    -------
    numpy.ndarray
        (n, n) transmission in [0, 1], centro-symmetric about the array centre.
    """
    radius = diameter_m / 2
    spiders = _vlt_spiders(spider_attach_m, spider_half_angle_deg)

    def inside(x, y):
        r = np.hypot(x, y)
        ok = (r < radius) & (r >= radius * obscuration)
        if spider_width_m > 0:
            x, y = _rotate(x, y, rotation_deg)
            for x0, y0, angle in spiders:
                t = math.radians(angle)
                ahead = (x - x0) * math.cos(t) + (y - y0) * math.sin(t) >= 0  # a ray, not a line
                ok &= ~(ahead & (_line_distance(x, y, angle, x0, y0) < spider_width_m / 2))
        return ok

    return _supersampled(n, pixel_m, supersample, inside)


def vlt_quadrants(n, pixel_m, *, spider_attach_m: float = VLT_SPIDER_ATTACH_M,
                  spider_half_angle_deg: float = VLT_SPIDER_HALF_ANGLE_DEG,
                  rotation_deg: float = VLT_ROTATION_DEG) -> np.ndarray:
    """Quadrant (0..3) of each pixel: the four pupil regions separated by the spiders.

    0 and 2 are the regions between the two spiders of a pair (on the +y and -y sides of the
    unrotated pattern), 1 and 3 the regions on the +x and -x sides. Opposite quadrants
    (0, 2) and (1, 3) are images of each other under r -> -r.
    """
    x, y = _rotate(*_coords(n, pixel_m), rotation_deg)
    half = math.radians(spider_half_angle_deg)
    q = np.where(x >= 0, 1, 3)
    q = np.where(np.abs(np.arctan2(x, y - spider_attach_m)) < half, 0, q)
    q = np.where(np.abs(np.arctan2(x, -y - spider_attach_m)) < half, 2, q)
    return q


# ---- measured masks from files ----------------------------------------------------------
MASK_DIR = Path(__file__).parent / "masks"


def shipped_masks() -> list[str]:
    """File names of the masks shipped with the package (usable as a bare ``path``)."""
    return sorted(p.name for p in MASK_DIR.glob("*.fits"))


def mask_path(path: str) -> Path:
    """The file of a mask: a shipped mask's bare name (with or without .fits), or a path (relative to the cwd)."""
    if Path(path).name == path:
        for name in (path, f"{path}.fits"):
            if (MASK_DIR / name).is_file():
                return MASK_DIR / name
    return Path(path)


def read_mask(path: str) -> np.ndarray:
    """A pupil mask from a FITS file: a square 2-D array of transmissions in [0, 1].

    Raises a one-line :class:`UserError` naming the file when it is missing or unreadable, or
    when its data is not a square 2-D array of finite values in [0, 1] with some transmission.
    """
    from ..io.fits import read_fits

    file = mask_path(path)
    mask = read_fits(file)
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise UserError(f"{file}: a pupil mask must be a square 2-D array, got shape {mask.shape}")
    if not np.isfinite(mask).all():
        raise UserError(f"{file}: the pupil mask has {int((~np.isfinite(mask)).sum())} NaN/infinite value(s)")
    if mask.min() < 0 or mask.max() > 1 or mask.max() == 0:
        raise UserError(f"{file}: pupil mask values must be transmissions in [0, 1], not all 0 "
                        f"(found {mask.min():g} to {mask.max():g})")
    return mask


def overlap_matrix(n_out: int, step_out: float, n_in: int, step_in: float) -> np.ndarray:
    """Fraction of each output pixel covered by each input pixel, (n_out, n_in), along one axis.

    Both grids are centred on 0; pixel widths ``step_out`` and ``step_in`` [m]. Row i times a
    1-D profile is the profile's mean over output pixel i (zero where no input pixel lies).
    """
    out_edges = (np.arange(n_out + 1) - n_out / 2) * step_out
    in_edges = (np.arange(n_in + 1) - n_in / 2) * step_in
    lo = np.maximum(out_edges[:-1, None], in_edges[None, :-1])
    hi = np.minimum(out_edges[1:, None], in_edges[None, 1:])
    return np.clip(hi - lo, 0.0, None) / step_out


def resample_mask(mask: np.ndarray, n: int, pixel_m: float, diameter_m: float) -> np.ndarray:
    """Area-weighted resampling of a square mask spanning ``diameter_m`` onto an (n, n) grid.

    Each output pixel (``pixel_m`` [m], grid centred on the array centre) gets the mask's
    transmission averaged over its area, from the exact overlap of the two pixel grids
    (separable: R_x @ mask @ R_y^T), so the transmitted area is conserved when the output grid
    covers the mask.
    """
    r = overlap_matrix(n, pixel_m, mask.shape[0], diameter_m / mask.shape[0])
    return r @ mask @ r.T


_FLIPS = {None: None, "none": None, "x": 0, "y": 1}


def file_pupil(n, pixel_m, diameter_m, obscuration, *, path: str | None = None, rotation_deg: float = 0.0,
               flip: str | None = None) -> np.ndarray:
    """Measured pupil mask from a FITS file, resampled onto the pupil grid by area.

    Parameters
    ----------
    n : int
        Array side [pixels]; the pupil centre is at ((n-1)/2, (n-1)/2).
    pixel_m : float
        Pixel size [m].
    diameter_m : float
        Pupil diameter D [m]: the mask's whole array spans D (as in P3 and maoppy's
        ``pupil_from_file``), its centre on the pupil centre.
    obscuration : float
        Unused: the mask holds its own central obscuration.
    path : str
        FITS file of a square 2-D transmission mask in [0, 1], or the bare file name of a
        shipped mask (:func:`shipped_masks`).
    rotation_deg : float
        Rotation of the mask from +x towards +y [deg]; a multiple of 90.
    flip : {None, 'x', 'y'}
        Mirror the mask, x -> -x (reverse axis 0) or y -> -y (axis 1), before the rotation.

    Returns
    -------
    numpy.ndarray
        (n, n) transmission in [0, 1].
    """
    if path is None:
        raise UserError("pupil kind 'file' needs a path (a FITS mask, or a shipped one: "
                        f"{', '.join(shipped_masks())})")
    if flip not in _FLIPS:
        raise UserError(f"pupil kind 'file': flip must be x, y or none, got {flip!r}")
    quarter_turns = float(rotation_deg) / 90.0
    if quarter_turns != round(quarter_turns):
        raise UserError(f"pupil kind 'file': rotation_deg must be a multiple of 90, got {rotation_deg}")
    mask = read_mask(path)
    if _FLIPS[flip] is not None:
        mask = np.flip(mask, axis=_FLIPS[flip])
    # rot90 turns from the first axis towards the second: from +x towards +y.
    mask = np.rot90(mask, int(round(quarter_turns)) % 4, axes=(0, 1))
    return resample_mask(mask, n, pixel_m, diameter_m)


PUPILS = {"circular": circular_pupil, "keck_hex": keck_hex_pupil, "vlt": vlt_pupil, "file": file_pupil}


def make_pupil(spec: dict, n: int, pixel_m: float, diameter_m: float, obscuration: float) -> np.ndarray:
    """Pupil transmission (n, n) for the geometry ``spec['kind']``."""
    kind = spec.get("kind", "circular")
    if kind not in PUPILS:
        raise UserError(f"unknown pupil kind {kind!r} (known: {', '.join(PUPILS)})")
    options = {k: v for k, v in spec.items() if k not in ("kind", "min_pixels", "scale")}
    _check_options(f"pupil kind {kind!r}", PUPILS[kind], options, skip=4)
    return PUPILS[kind](n, pixel_m, diameter_m, obscuration, **options)


def _check_options(what: str, func, options: dict, skip: int) -> None:
    """One-line error for a misspelt preset key instead of a TypeError from deep inside."""
    params = list(inspect.signature(func).parameters)[skip:]
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise UserError(f"{what}: unknown option(s) {unknown} (known: {', '.join(params) or 'none'})")


# ---- static bases -------------------------------------------------------------------------
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


def noll_to_nm(j: int) -> tuple[int, int]:
    """Radial order n and azimuthal frequency m of the Noll (1976) Zernike index j >= 1.

    m > 0 is a cos(m theta) mode, m < 0 a sin(|m| theta) mode (even j: cosine, odd j: sine).
    """
    if j < 1:
        raise UserError(f"Noll index must be >= 1, got {j}")
    n = int((math.isqrt(8 * (j - 1) + 1) - 1) // 2)
    p = j - n * (n + 1) // 2  # position within order n, 1..n+1
    k = n % 2
    m = 2 * ((p + k) // 2) - k
    return n, (m if j % 2 == 0 else -m) if m else 0


def zernike_noll(j: int, rho: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Noll-normalised Zernike polynomial Z_j (unit RMS over the unit disk).

    Parameters
    ----------
    j : int
        Noll index (1 piston, 2-3 tilts, 4 defocus, ...).
    rho, theta : numpy.ndarray
        Normalised radius (1 at the disk edge) and angle [rad] from +x towards +y.
        The polynomial is evaluated everywhere (not masked to rho <= 1).
    """
    n, m = noll_to_nm(j)
    am = abs(m)
    radial = np.zeros_like(rho, dtype=float)
    for s in range((n - am) // 2 + 1):
        c = (-1) ** s * math.factorial(n - s) / (
            math.factorial(s) * math.factorial((n + am) // 2 - s) * math.factorial((n - am) // 2 - s))
        radial = radial + c * rho ** (n - 2 * s)
    if m == 0:
        return math.sqrt(n + 1) * radial
    ang = np.cos(am * theta) if m > 0 else np.sin(am * theta)
    return math.sqrt(2 * (n + 1)) * radial * ang


_KECK_ZERNIKE_KEYS = ("noll", "segment_flat_to_flat_m", "rotation_deg", "rings")
_PETAL_KEYS = ("remove_global_piston", "spider_attach_m", "spider_half_angle_deg", "rotation_deg")


def _check_keys(what: str, spec: dict, known) -> None:
    unknown = sorted(set(spec) - set(known) - {"kind"})
    if unknown:
        raise UserError(f"{what}: unknown option(s) {unknown} (known: {', '.join(known)})")


def _no_basis(spec, pupil, pixel_m, diameter_m):
    return np.zeros((0,) + pupil.shape)


def _file_basis(spec, pupil, pixel_m, diameter_m):
    # A user basis is taken as given (modes in nm); only masked to the pupil.
    return basis_from_fits(spec["path"], pupil)


def keck_segment_zernike_basis(spec, pupil, pixel_m, diameter_m) -> np.ndarray:
    """Segment-piston modes: Noll Zernikes averaged over each Keck segment.

    Each Zernike Z_j (over the disk of diameter ``diameter_m``) is replaced, on every segment,
    by its transmission-weighted mean over that segment: the mode is a pure piston per
    segment, the part of Z_j a segmented mirror's phasing errors can hold. Then the pupil
    mean is removed and the mode scaled to 1 nm RMS over the pupil.

    Spec keys: ``noll`` (list of Noll indices, default 4..12), and the segment geometry
    ``segment_flat_to_flat_m``, ``rotation_deg``, ``rings`` (same meaning and defaults as in
    :func:`keck_hex_pupil`; keep them equal to the pupil's, e.g. with YAML anchors).

    Returns
    -------
    numpy.ndarray
        (K, n, n) modes [nm per unit coefficient], piecewise constant over the segments.
    """
    _check_keys("static kind 'keck_segment_zernike'", spec, _KECK_ZERNIKE_KEYS)
    noll = [int(j) for j in spec.get("noll", range(4, 13))]
    n = pupil.shape[0]
    labels = keck_segment_labels(
        n, pixel_m, pupil,
        segment_flat_to_flat_m=float(spec.get("segment_flat_to_flat_m", KECK_SEGMENT_FLAT_TO_FLAT_M)),
        rings=int(spec.get("rings", KECK_RINGS)), rotation_deg=float(spec.get("rotation_deg", 0.0)))
    valid = labels >= 0
    lab = labels[valid]
    w = pupil[valid]
    nseg = int(labels.max()) + 1
    area = np.bincount(lab, weights=w, minlength=nseg)
    x, y = _coords(n, pixel_m)
    rho = np.hypot(x[valid], y[valid]) / (diameter_m / 2)
    theta = np.arctan2(y[valid], x[valid])
    modes = np.zeros((len(noll), n, n))
    for k, j in enumerate(noll):
        mean = np.bincount(lab, weights=w * zernike_noll(j, rho, theta), minlength=nseg)
        modes[k][valid] = (mean / np.where(area > 0, area, 1))[lab]
    return normalise_basis(modes, pupil)


def _gram_schmidt(modes: np.ndarray, pupil: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    """Orthonormalise (pupil-weighted mean inner product) in order, dropping dependent modes.

    Done on the K x K Gram matrix (coefficient space), then applied in one product: the
    same result as Gram-Schmidt on the maps, without K^2 passes over them.
    """
    flat = modes.reshape(len(modes), -1)
    gram = (flat * (pupil / pupil.sum()).ravel()) @ flat.T
    coeffs = []
    for k in range(len(modes)):
        c = np.zeros(len(modes))
        c[k] = 1.0
        for q in coeffs:
            c -= (q @ gram @ c) * q
        norm2 = c @ gram @ c
        if norm2 > (rtol**2) * gram[k, k] and norm2 > 0:
            coeffs.append(c / math.sqrt(norm2))
    return (np.array(coeffs) @ flat).reshape((-1,) + pupil.shape)


def petal_basis(spec, pupil, pixel_m, diameter_m) -> np.ndarray:
    """Low-wind-effect modes: piston, tip and tilt of each of the four VLT pupil quadrants.

    The 12 quadrant modes (piston, x-tilt, y-tilt times each quadrant indicator) are first
    combined into sums and differences of opposite quadrants, which are even or odd under
    r -> -r (opposite quadrants are images of each other); the global piston is projected
    out; then the modes are orthonormalised over the pupil (Gram-Schmidt, pupil-weighted;
    even and odd modes are orthogonal by symmetry, so each keeps its parity) and scaled to
    1 nm RMS. This spans exactly the 12 quadrant modes minus the global piston: 11 modes,
    in the order even piston (0+2 vs 1+3), 2 even x-tilts, 2 even y-tilts, 2 odd pistons,
    2 odd x-tilts, 2 odd y-tilts. Quadrants as in :func:`vlt_quadrants`.

    Spec keys: ``remove_global_piston`` (must be true, the default: static modes are
    zero-mean by the module convention) and the spider geometry
    ``spider_attach_m``, ``spider_half_angle_deg``, ``rotation_deg`` (as :func:`vlt_pupil`;
    keep them equal to the pupil's).
    """
    _check_keys("static kind 'petal'", spec, _PETAL_KEYS)
    if not spec.get("remove_global_piston", True):
        # Static bases are zero-mean by convention (a global piston does not change a PSF),
        # so a basis keeping it cannot be built.
        raise UserError("static kind 'petal': remove_global_piston: false is not supported "
                        "(a global piston has no effect on the PSF; static modes are zero-mean)")
    n = pupil.shape[0]
    quad = vlt_quadrants(
        n, pixel_m, spider_attach_m=float(spec.get("spider_attach_m", VLT_SPIDER_ATTACH_M)),
        spider_half_angle_deg=float(spec.get("spider_half_angle_deg", VLT_SPIDER_HALF_ANGLE_DEG)),
        rotation_deg=float(spec.get("rotation_deg", VLT_ROTATION_DEG)))
    x, y = _coords(n, pixel_m)
    x, y = x / (diameter_m / 2), y / (diameter_m / 2)  # tilts of order 1 over the pupil
    ind = [(quad == q).astype(float) for q in range(4)]
    # Opposite quadrants swap under r -> -r: a piston on both is even, their difference odd;
    # x and y are odd, so for tilts it is the other way round.
    sums = [ind[0] + ind[2], ind[1] + ind[3]]
    diffs = [ind[0] - ind[2], ind[1] - ind[3]]
    even = sums + [c * d for c in (x, y) for d in diffs]
    odd = diffs + [c * s for c in (x, y) for s in sums]
    modes = np.array(even + odd) * (pupil > 0)
    # Project out the global piston (the pupil-weighted mean): the two even pistons become
    # dependent and Gram-Schmidt drops the second one, leaving 11 modes.
    w = pupil / pupil.sum()
    modes = (modes - np.tensordot(modes, w, axes=([1, 2], [0, 1]))[:, None, None]) * (pupil > 0)
    return normalise_basis(_gram_schmidt(modes, pupil), pupil)


STATIC_BASES = {
    "none": _no_basis,
    "file": _file_basis,
    "keck_segment_zernike": keck_segment_zernike_basis,
    "petal": petal_basis,
}


def make_static_basis(spec: dict, pupil: np.ndarray, pixel_m: float, diameter_m: float) -> np.ndarray:
    """Static-aberration basis (K, n, n) [nm per unit coefficient] for ``spec['kind']``."""
    kind = spec.get("kind", "none")
    if kind not in STATIC_BASES:
        raise UserError(f"unknown static basis kind {kind!r} (known: {', '.join(STATIC_BASES)})")
    return STATIC_BASES[kind](spec, pupil, pixel_m, diameter_m)


def even_modes(basis: np.ndarray, pupil: np.ndarray, tol: float = 0.5) -> np.ndarray:
    """Boolean (K,): modes with phi(-r) = phi(r) on the pupil, within ``tol``.

    For such modes a single in-focus image cannot tell mu from -mu: phi(r) and -phi(-r)
    give the same PSF through a centro-symmetric pupil, and -phi(-r) = -phi(r) when phi is even.
    The reflection is taken about the pupil's centroid (moving the pupil does not change the PSF).
    A measured mask is never exactly symmetric, so a mode counts as even when its reflected copy
    differs from it by less than ``tol`` of its RMS: drawn pupils give 0 for even modes and 2 for
    odd ones; the shipped masks 0.11-0.15 (NIRC2) and 0.18-0.37 (SPHERE Lyot stop, with its
    dead-actuator spots) for the even modes, 1.95-2.0 for the odd ones. The twin images then
    differ only through the mask's asymmetry: a CNN fine-tuned on the NIRC2 mask with these modes
    sign-determined hedged them (median error 60 nm against 24 nm modulo sign: models/README.md).
    """
    from scipy.ndimage import shift

    yy, xx = np.indices(pupil.shape)
    total = pupil.sum()
    centre = (np.asarray(pupil.shape) - 1) / 2
    offset = centre - np.array([(pupil * yy).sum(), (pupil * xx).sum()]) / total
    if np.abs(offset).max() > 1e-9:  # sub-pixel: bring the centroid to the array centre
        basis = np.stack([shift(b, offset, order=1, mode="constant") for b in basis])
    flipped = basis[:, ::-1, ::-1]
    norm = np.sqrt((basis**2).sum(axis=(1, 2))) + 1e-300
    return np.sqrt(((basis - flipped) ** 2).sum(axis=(1, 2))) / norm < tol
