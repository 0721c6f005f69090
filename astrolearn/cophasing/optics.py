"""Optics of a 4-petal deployable telescope: pupil, the 12 petal modes, Fourier-optics images.

Pupil (:class:`Optics`, every length in metres): an annulus of diameter ``diameter_m`` and central
obscuration ``obscuration`` (ratio of diameters), cut into ``n_petals`` equal angular sectors
separated by straight gaps of ``gap_m`` along the sector boundaries; petal 1 is centred on the
angle ``rotation_deg`` from the +x axis, the others follow counter-clockwise. The pupil is sampled
on ``npup`` x ``npup`` pixels whose centres are symmetric about the optical axis; each petal's
transmission is anti-aliased (the share of 4 x 4 sub-pixels inside it).

Defaults (the AZIMOV-class nanosatellite of issue 16): a 0.3 m deployable primary, about what a
12U CubeSat can unfold from petals that fit its 22 x 22 cm section; a 0.3 central obscuration,
usual for a compact Cassegrain; 5 mm gaps between petals, of the order of the hinge clearances.
These are stated assumptions, not a published design: every one is an option.

Modes (12 for 4 petals, in nm of optical path): ``piston_k`` (the petal moved along the axis),
``tip_k`` and ``tilt_k`` (a phase ramp along x and y over petal k, zero-mean over the petal and
scaled to **1 nm RMS over the petal** per nm of coefficient). A petal centred on an axis makes
its x and y ramps orthogonal over it (mirror symmetry), so with the default rotation 0 the
wavefront error of a petal is the quadratic sum of its three coefficients. The common piston of
the 4 petals changes no image: estimators report pistons with their mean removed
(:func:`observable`), and :meth:`Optics.wfe_nm` removes it too.

Images (:meth:`Optics.psf`): Fraunhofer diffraction computed by matrix Fourier transform (MFT),
so that the detector's pixel scale ``pixel_scale_mas`` is the same at every wavelength; the
default 200 mas is Nyquist (lambda / 2D) for lambda >= 582 nm. The image grid is centred on the
optical axis (between the 4 central pixels for an even ``npix``). ``oversample`` > 1 computes
``oversample`` x ``oversample`` points per pixel and sums them (pixel integration). A broadband
image sums equal-photon images at ``wavelengths_nm``. With ``diversity_nm`` > 0, a second
channel has a known defocus of that many nm RMS over the pupil added (phase diversity): a single
in-focus image of a centro-symmetric pupil cannot tell phi(r) from -phi(-r)
(:func:`twin_modes`), the defocused one can.

Everything is batched in torch, runs on CPU or GPU and is differentiable in the modes (for the
least-squares fit and the Cramer-Rao bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from ..errors import UserError

MAS = math.pi / 180 / 3600 / 1000  # radians per milliarcsecond


def mode_names(n_petals: int = 4) -> list[str]:
    """``piston_1..n``, ``tip_1..n``, ``tilt_1..n``: the order of every mode vector."""
    return [f"{kind}_{k + 1}" for kind in ("piston", "tip", "tilt") for k in range(n_petals)]


@dataclass
class Optics:
    """Pupil, detector and wavelengths of a petal telescope (see the module documentation).

    Parameters
    ----------
    diameter_m : float
        Outer diameter D [m].
    obscuration : float
        Central obscuration, as a fraction of D.
    gap_m : float
        Width of the gaps between petals [m].
    n_petals : int
        Number of petals (equal sectors).
    rotation_deg : float
        Angle of the centre of petal 1 from +x [deg].
    npup : int
        Pupil pixels across D.
    npix : int
        Detector pixels across the image (square).
    pixel_scale_mas : float
        Detector pixel [mas].
    oversample : int
        Points per pixel side computed and summed (pixel integration); 1: sampled at pixel centres.
    wavelengths_nm : list of float
        One wavelength (monochromatic) or several summed with equal photon counts (broadband).
    diversity_nm : float
        Defocus of the second channel [nm RMS over the pupil]; 0: the in-focus image only.
    """

    diameter_m: float = 0.3
    obscuration: float = 0.3
    gap_m: float = 0.005
    n_petals: int = 4
    rotation_deg: float = 0.0
    npup: int = 64
    npix: int = 32
    pixel_scale_mas: float = 200.0
    oversample: int = 1
    wavelengths_nm: list = field(default_factory=lambda: [650.0])
    diversity_nm: float = 200.0

    def __post_init__(self):
        self.wavelengths_nm = [float(w) for w in np.atleast_1d(self.wavelengths_nm)]
        checks = {"diameter_m": self.diameter_m > 0, "obscuration": 0 <= self.obscuration < 1,
                  "gap_m": 0 <= self.gap_m < self.diameter_m / 4, "n_petals": self.n_petals >= 2,
                  "npup": self.npup >= 16, "npix": self.npix >= 4, "pixel_scale_mas": self.pixel_scale_mas > 0,
                  "oversample": self.oversample >= 1, "diversity_nm": self.diversity_nm >= 0,
                  "wavelengths_nm": len(self.wavelengths_nm) > 0 and min(self.wavelengths_nm) > 0}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise UserError(f"optics: invalid {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")
        self._cache = {}

    # ---- description ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Optics":
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"optics: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**data)

    @property
    def n_modes(self) -> int:
        return 3 * self.n_petals

    @property
    def names(self) -> list[str]:
        return mode_names(self.n_petals)

    @property
    def channels(self) -> int:
        """Images per measurement: 2 with phase diversity, else 1."""
        return 2 if self.diversity_nm > 0 else 1

    def sampling(self, wavelength_nm: float | None = None) -> float:
        """Pixels per lambda/D at ``wavelength_nm`` (default: the shortest); >= 2 is Nyquist."""
        lam = min(self.wavelengths_nm) if wavelength_nm is None else wavelength_nm
        return lam * 1e-9 / self.diameter_m / (self.pixel_scale_mas * MAS)

    # ---- pupil ---------------------------------------------------------------------------
    def _grid(self, n: int, sub: int = 1) -> np.ndarray:
        """Coordinates [m] of n*sub points across D, symmetric about 0."""
        step = self.diameter_m / (n * sub)
        return (np.arange(n * sub) - (n * sub - 1) / 2) * step

    def _petal_index(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Petal index (0..n-1) of points, -1 outside the pupil or in a gap."""
        r = np.hypot(x, y)
        inside = (r <= self.diameter_m / 2) & (r >= self.obscuration * self.diameter_m / 2)
        width = 2 * math.pi / self.n_petals
        rot = math.radians(self.rotation_deg)
        angle = np.mod(np.arctan2(y, x) - rot + width / 2, 2 * math.pi)
        index = np.floor(angle / width).astype(int) % self.n_petals
        for j in range(self.n_petals):  # gaps: strips along the sector boundaries
            b = rot + width / 2 + j * width
            along = x * math.cos(b) + y * math.sin(b)
            across = -x * math.sin(b) + y * math.cos(b)
            inside &= ~((np.abs(across) < self.gap_m / 2) & (along > 0))
        return np.where(inside, index, -1)

    def petal_masks(self) -> np.ndarray:
        """(n_petals, npup, npup) transmission of each petal in [0, 1] (anti-aliased)."""
        if "masks" not in self._cache:
            sub = 4
            g = self._grid(self.npup, sub)
            xx, yy = np.meshgrid(g, g)  # y along rows
            idx = self._petal_index(xx, yy)
            masks = np.stack([(idx == k).reshape(self.npup, sub, self.npup, sub).mean(axis=(1, 3))
                              for k in range(self.n_petals)])
            self._cache["masks"] = masks
        return self._cache["masks"]

    def pupil(self) -> np.ndarray:
        """(npup, npup) pupil transmission."""
        return self.petal_masks().sum(0)

    def basis(self) -> np.ndarray:
        """(n_modes, npup, npup) optical path of 1 nm of each mode [nm] (see :func:`mode_names`)."""
        if "basis" not in self._cache:
            masks = self.petal_masks()
            g = self._grid(self.npup)
            xx, yy = np.meshgrid(g, g)
            piston, tip, tilt = [], [], []
            for m in masks:
                w = m / m.sum()
                piston.append((m > 0).astype(float))
                for coord, out in ((xx, tip), (yy, tilt)):
                    ramp = coord - (w * coord).sum()
                    out.append(np.where(m > 0, ramp / math.sqrt((w * ramp ** 2).sum()), 0.0))
            self._cache["basis"] = np.stack(piston + tip + tilt)
        return self._cache["basis"]

    def defocus(self) -> np.ndarray:
        """(npup, npup) defocus (2r^2 - 1 shape) of 1 nm RMS over the pupil, zero mean over it [nm]."""
        g = self._grid(self.npup) / (self.diameter_m / 2)
        xx, yy = np.meshgrid(g, g)
        w = self.pupil() / self.pupil().sum()
        d = 2 * (xx ** 2 + yy ** 2) - 1
        d = d - (w * d).sum()
        return d / math.sqrt((w * d ** 2).sum())

    # ---- wavefront statistics ------------------------------------------------------------
    def opd(self, modes) -> torch.Tensor:
        """(B, npup, npup) optical path [nm] of modes (B, n_modes) [nm]."""
        modes = torch.as_tensor(modes)
        basis = torch.as_tensor(self.basis(), dtype=modes.dtype, device=modes.device)
        return torch.einsum("bm,mij->bij", modes, basis)

    def wfe_nm(self, modes) -> np.ndarray:
        """Wavefront error [nm RMS over the pupil, common piston removed] of modes (B, n_modes)."""
        modes = torch.as_tensor(np.asarray(modes, dtype=np.float64))
        w = torch.as_tensor(self.pupil() / self.pupil().sum(), dtype=torch.float64)
        opd = self.opd(modes)
        mean = (opd * w).sum((-2, -1), keepdim=True)
        return ((opd - mean) ** 2 * w).sum((-2, -1)).sqrt().numpy()

    def strehl(self, modes, wavelength_nm: float | None = None) -> np.ndarray:
        """Strehl ratio |<exp(i phi)>|^2 over the pupil (transmission-weighted) at ``wavelength_nm``.

        Default wavelength: the middle one of ``wavelengths_nm`` (650 nm by default).
        """
        lam = self.reference_wavelength if wavelength_nm is None else wavelength_nm
        modes = torch.as_tensor(np.asarray(modes, dtype=np.float64))
        p = torch.as_tensor(self.pupil(), dtype=torch.float64)
        phase = self.opd(modes) * (2 * math.pi / lam)
        field_ = (p * torch.exp(1j * phase)).sum((-2, -1)) / p.sum()
        return (field_.abs() ** 2).numpy()

    @property
    def reference_wavelength(self) -> float:
        """The middle wavelength [nm], at which Strehl ratios are reported."""
        return float(sorted(self.wavelengths_nm)[len(self.wavelengths_nm) // 2])

    # ---- images ----------------------------------------------------------------------------
    def _mft(self, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Fourier matrices (L, npix*oversample, npup) and intensity factors (L,) per wavelength."""
        key = ("mft", dtype, device)
        if key not in self._cache:
            q = self.oversample
            x = torch.as_tensor(self._grid(self.npup), dtype=torch.float64)
            step = self.pixel_scale_mas * MAS / q
            u = (torch.arange(self.npix * q, dtype=torch.float64) - (self.npix * q - 1) / 2) * step
            lam = torch.as_tensor(self.wavelengths_nm, dtype=torch.float64) * 1e-9
            mats = torch.exp(-2j * math.pi * u[None, :, None] * x[None, None, :] / lam[:, None, None])
            # |sum U e^(..)|^2 dx^2 (pixel / q)^2 / (lambda^2 sum |U|^2): the share of the flux of
            # a point source falling on one sub-pixel (Parseval), divided by the wavelength count.
            dx = self.diameter_m / self.npup
            total = float((self.pupil() ** 2).sum())
            scale = dx ** 2 * step ** 2 / (lam ** 2 * total) / len(self.wavelengths_nm)
            cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
            self._cache[key] = (mats.to(cdtype).to(device), scale.to(dtype).to(device))
        return self._cache[key]

    def psf(self, modes) -> torch.Tensor:
        """Noiseless images (B, C, npix, npix) of a point source, in shares of its flux.

        Parameters
        ----------
        modes : torch.Tensor, shape (B, n_modes)
            Mode coefficients [nm]; float32 or float64, on any device; differentiable.

        Returns
        -------
        torch.Tensor
            Channel 0 in focus, channel 1 (with diversity) defocused by ``diversity_nm``. An
            unaberrated image sums to nearly 1 (the flux outside the field is lost).
        """
        modes = torch.as_tensor(modes)
        if modes.ndim != 2 or modes.shape[1] != self.n_modes:
            raise ValueError(f"modes must have shape (B, {self.n_modes}), not {tuple(modes.shape)}")
        dtype, device = modes.dtype, modes.device
        mats, scale = self._mft(dtype, device)
        opd = self.opd(modes)[:, None]  # (B, 1, n, n)
        if self.channels == 2:
            d = torch.as_tensor(self.defocus() * self.diversity_nm, dtype=dtype, device=device)
            opd = torch.cat([opd, opd + d], dim=1)  # (B, C, n, n)
        amp = torch.as_tensor(self.pupil(), dtype=dtype, device=device)
        lam = torch.as_tensor(self.wavelengths_nm, dtype=dtype, device=device)
        phase = opd[:, :, None] * (2 * math.pi / lam)[:, None, None]  # (B, C, L, n, n)
        pupil_field = torch.complex(amp * torch.cos(phase), amp * torch.sin(phase))
        e = mats @ pupil_field @ mats.transpose(-1, -2)  # (B, C, L, nq, nq)
        img = ((e.real ** 2 + e.imag ** 2) * scale[:, None, None]).sum(2)
        q = self.oversample
        if q > 1:
            img = img.reshape(*img.shape[:-2], self.npix, q, self.npix, q).sum((-3, -1))
        return img


def observable(modes) -> np.ndarray:
    """Modes (B, 3n) with the common piston of the n petals removed (what images can tell)."""
    modes = np.array(modes, dtype=np.float64)
    n = modes.shape[1] // 3
    modes[:, :n] -= modes[:, :n].mean(1, keepdims=True)
    return modes


def twin_modes(modes, n_petals: int = 4) -> np.ndarray:
    """Modes of the wavefront -phi(-r), whose in-focus image equals that of phi(r).

    Point reflection maps petal k onto petal k + n/2 (even n, centro-symmetric pupil): pistons
    change sign, and tip/tilt ramps, odd about the petal's centre, keep theirs.
    """
    if n_petals % 2:
        raise ValueError("a pupil of an odd number of petals is not centro-symmetric")
    modes = np.asarray(modes, dtype=np.float64)
    opposite = (np.arange(n_petals) + n_petals // 2) % n_petals
    out = np.empty_like(modes)
    for kind, sign in ((0, -1.0), (1, 1.0), (2, 1.0)):
        out[:, kind * n_petals:(kind + 1) * n_petals] = sign * modes[:, kind * n_petals + opposite]
    return out
