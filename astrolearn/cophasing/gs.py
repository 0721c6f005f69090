"""Gerchberg-Saxton estimate of the 12 petal modes: the second classical baseline of issue 16.

Error reduction (Gerchberg & Saxton 1972; Fienup 1982) between the pupil plane, where the
amplitude is the known transmission :meth:`Optics.pupil`, and the focal plane, where it is the
measured modulus ``sqrt(image / flux)``. With phase diversity the defocused image is used as in
Misell's algorithm (multi-plane GS): each channel's pupil field carries the current wavefront plus
its known defocus, is propagated, given its measured modulus and propagated back; the
back-propagated phase minus the channel's defocus is that channel's wavefront estimate, and the
channels are averaged. In broadband light each wavelength's field is propagated separately, the
modelled image is their sum as :meth:`Optics.psf` renders it, and every wavelength's field is
scaled by the same ``sqrt(measured / modelled)`` (the polychromatic modulus constraint); each
back-propagated phase is converted to nm of optical path (``phase lambda / 2 pi``) and the
channels and wavelengths are averaged, weighted by the back-propagated amplitude. Each phase
is read relative to the current wavefront (wrapped to +-pi there), so the estimates of the
different wavelengths agree on one wavefront instead of wrapping at different places.

The wavefront is then projected by least squares onto the 12 petal modes over each petal's
pixels (weighted by the pupil transmission) at every iteration: modal (parametric) GS. With the
phase left free on every pupil pixel and projected only at the end, the iteration stagnates
several nm from the truth (measured on 16 noiseless broadband pairs, pistons +-150 nm, tip/tilt
+-100 nm, 100 iterations: median error 8 nm RMS, against < 0.01 nm with the projection at every
iteration): the 32 x 32 detector constrains too little of the focal plane for 3 000 free pupil
phases. The estimate starts at zero (flat wavefront, the natural start
in a closed loop) and iterates until no estimate of a batch moves by more than ``tol_nm``.

Sampling: the propagator is the model's own matrix Fourier transform (:meth:`Optics._mft`), so
the focal field lies exactly on the detector's pixels (or on their ``oversample`` x
``oversample`` sub-pixels) at every wavelength. A zero-padded FFT would need a grid of
``lambda / (pupil pixel x detector pixel)`` points per side (143.0 at 650 nm with the
defaults: not an integer, and another one per wavelength), and the detector sees only its
central 32 x 32. GS on that FFT grid with the unmeasured pixels left free changes the pupil field
by ``M^H (E' - E) conj(M) / N^2``, where ``M`` holds the rows of the FFT that the detector
measures (the MFT matrix), ``E`` the propagated field, ``E'`` the field given the measured
modulus and ``N`` the grid size; that update, with the real-valued ``N``, is what runs here.
With ``oversample`` > 1 each pixel's measured intensity constrains the sum of its sub-pixels:
their fields are scaled by the same factor.

Where it applies: GS recovers the phase modulo 2 pi, so the estimate is the wavefront nearest
the flat start: monochromatic pistons beyond +-lambda/2 between petals come back wrapped by a
wavelength, and in broadband light the fit lands on the nearest wavelength-consistent solution
(capture range: ``benchmarks/cophasing_gs.py``). Without diversity, a centro-symmetric pupil's
in-focus image cannot tell phi(r) from -phi(-r) (:func:`optics.twin_modes`): GS returns one of
them, decided by rounding. The modulus constraint takes the noisy data at face value (negative
pixels clipped to 0): photon noise enters unweighted, unlike in the least squares of
:mod:`fit`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .optics import Optics, observable


class GsEstimator:
    """Modal Gerchberg-Saxton / Misell estimator of the petal modes (see the module documentation).

    Parameters
    ----------
    optics : Optics
        The sensor that took the images (pupil, detector sampling, wavelengths, diversity).
    iterations : int
        Most GS iterations per measurement.
    tol_nm : float
        Stop when no estimate of a batch moved by more than this in an iteration [nm].
    batch : int
        Measurements iterated together.
    device : str
        Where the iterations run (``"cuda"`` on a GPU).
    """

    def __init__(self, optics: Optics, iterations: int = 200, tol_nm: float = 1e-3, batch: int = 64,
                 device: str = "cpu"):
        self.optics = optics
        self.iterations, self.tol_nm, self.batch, self.device = iterations, tol_nm, batch, device
        self.dtype = torch.float32
        o, dt, dev = optics, self.dtype, device
        self.mats, self.scale = o._mft(dt, dev)  # (L, nq, npup), (L,)
        self.lam = torch.as_tensor(o.wavelengths_nm, dtype=dt, device=dev)
        # Side of the FFT grid whose rows the detector samples, per wavelength (not an integer).
        side = [o.npup * o.oversample * o.sampling(w) for w in o.wavelengths_nm]
        self.step = torch.as_tensor(side, dtype=dt, device=dev)[:, None, None] ** -2
        self.amp = torch.as_tensor(o.pupil(), dtype=dt, device=dev)
        self.basis = torch.as_tensor(o.basis(), dtype=dt, device=dev)
        diversity = torch.as_tensor(o.defocus() * o.diversity_nm, dtype=dt, device=dev)
        self.diversity = torch.stack([torch.zeros_like(diversity), diversity])[:o.channels]  # (C, n, n)
        # Least squares onto the modes, weighted by the transmission: (n_modes, npup, npup) projector.
        gram = torch.einsum("ij,aij,bij->ab", self.amp, self.basis, self.basis).double()
        self.projector = torch.einsum("ab,bij->aij", torch.linalg.inv(gram).to(dt), self.basis * self.amp)

    @classmethod
    def from_meta(cls, meta: dict, **kwargs) -> "GsEstimator":
        """The estimator of a trained model's optics."""
        return cls(Optics.from_dict(meta["optics"]), **kwargs)

    def estimate(self, images: np.ndarray) -> np.ndarray:
        """Modes (N, n_modes) [nm, common piston removed] of images (N, C, npix, npix) [e-, background subtracted]."""
        images = np.asarray(images, dtype=np.float32)
        out = [self._iterate(torch.as_tensor(images[lo:lo + self.batch], device=self.device))
               for lo in range(0, len(images), self.batch)]
        return observable(torch.cat(out).double().cpu().numpy()) if out else np.zeros((0, self.optics.n_modes))

    def _iterate(self, data: torch.Tensor) -> torch.Tensor:
        """Modes (B, n_modes) [nm] of images (B, C, npix, npix)."""
        o, q = self.optics, self.optics.oversample
        data = data.clamp(min=0)
        wavenumber = (2 * math.pi / self.lam)[:, None, None]  # rad per nm, (L, 1, 1)
        modes = torch.zeros(len(data), o.n_modes, dtype=self.dtype, device=self.device)
        for _ in range(self.iterations):
            opd = torch.einsum("ba,aij->bij", modes, self.basis)
            phase = (opd[:, None] + self.diversity)[:, :, None] * wavenumber  # (B, C, L, n, n)
            pupil_field = torch.polar(self.amp.expand_as(phase), phase)
            field = self.mats @ pupil_field @ self.mats.transpose(-1, -2)  # (B, C, L, nq, nq)
            model = ((field.real ** 2 + field.imag ** 2) * self.scale[:, None, None]).sum(2)
            if q > 1:
                model = model.reshape(*model.shape[:-2], o.npix, q, o.npix, q).sum((-3, -1))
            flux = data.sum((-2, -1), keepdim=True) / model.sum((-2, -1), keepdim=True)
            model = flux * model
            floor = torch.finfo(self.dtype).eps * model.amax((-2, -1), keepdim=True)
            ratio = (data / model.clamp(min=floor)).sqrt()
            if q > 1:
                ratio = ratio.repeat_interleave(q, -2).repeat_interleave(q, -1)
            change = field * (ratio[:, :, None] - 1)  # measured modulus minus the modelled one
            back = pupil_field + self.step * (self.mats.conj().transpose(-1, -2) @ change @ self.mats.conj())
            # Optical path [nm] each channel and wavelength adds to the current wavefront, wrapped there.
            delta = torch.angle(back * pupil_field.conj()) / wavenumber
            weight = back.abs()
            opd = opd + (delta * weight).sum((1, 2)) / weight.sum((1, 2)).clamp(min=torch.finfo(self.dtype).tiny)
            new = torch.einsum("aij,bij->ba", self.projector, opd)
            moved = (new - modes).abs().max()
            modes = new
            if moved < self.tol_nm:
                break
        return modes
