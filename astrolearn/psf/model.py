"""PSFAO19 forward model in PyTorch: batched, differentiable, CPU or GPU, float32/float64.

The model of Fétick et al. 2019 (A&A 628, A99): the phase power spectral density (PSD) is a
von Kármán spectrum ``0.0229 r0^(-5/3) (1/L0² + f²)^(-11/6)`` outside the AO cut-off
``f_AO = (nact-1)/(2D)`` and ``C + A x Moffat(alpha, ratio, theta, beta)`` inside it, the
Moffat being normalised to unit integral on the corrected area. The long-exposure OTF is
``OTF_static x exp(-D_phi/2)`` times the pixel transfer function; undersampled images are
computed on an oversampled grid and binned. The numerical conventions (grids, PSD integral up
to infinity, shift compensation of the binning) follow maoppy's ``Psfao`` so that both agree to
round-off on a circular pupil.

Parameters of one PSF (``PSD_NAMES``), all at the image wavelength:

=========  ==========  ===========================================================
name       unit        meaning
=========  ==========  ===========================================================
r0         m           Fried parameter (halo, uncorrected frequencies)
bck        rad² m²     constant PSD level C in the corrected area
amp        rad²        phase variance A of the Moffat part in the corrected area
alpha      1/m         Moffat width
ratio      -           Moffat elongation sqrt(ax/ay)
theta      rad         Moffat orientation
beta       -           Moffat power law (> 1)
=========  ==========  ===========================================================

Static aberrations enter through the complex pupil: ``phase = 2 pi / lambda x sum_i mu_i
mode_i`` with ``mu`` in nm and the modes of the instrument's static basis.
"""

from __future__ import annotations

import math

import torch

from .instruments import Instrument, load_instrument

PSD_NAMES = ("r0", "bck", "amp", "alpha", "ratio", "theta", "beta")
VK_CONSTANT = 0.0229  # (24/5 Gamma(6/5))^(5/6) Gamma(11/6)^2 / (2 pi^(11/3)) ~ 0.0229


def r0_to_wavelength(r0_500nm, wavelength_m):
    """Fried parameter at ``wavelength_m`` [m] from its value at 500 nm (r0 ∝ lambda^(6/5))."""
    return r0_500nm * (wavelength_m / 500e-9) ** 1.2


def r0_to_500nm(r0, wavelength_m):
    """Fried parameter at 500 nm [m] from its value at ``wavelength_m``."""
    return r0 * (500e-9 / wavelength_m) ** 1.2


def nm_rms_to_rad2(sigma_nm, wavelength_m):
    """Phase variance [rad²] of a wavefront error of ``sigma_nm`` nm RMS at ``wavelength_m``."""
    return (2 * math.pi * sigma_nm * 1e-9 / wavelength_m) ** 2


class PsfaoModel(torch.nn.Module):
    """Batched PSFAO19 PSFs for one instrument at one wavelength.

    Parameters
    ----------
    instrument : Instrument or str
        Instrument description or preset name.
    dtype : torch.dtype
        ``torch.float64`` (reference accuracy) or ``torch.float32`` (speed).
    device : torch.device or str, optional
        Where the grids live; inputs must be on the same device.

    Notes
    -----
    Call ``model(psd_params, static=None, dx=None, dy=None)`` with ``psd_params`` of shape
    (N, 7) in the order of ``PSD_NAMES`` to get N PSFs (N, npix, npix), each summing to ~1
    (exactly 1 up to the flux falling outside the field).
    """

    def __init__(self, instrument: Instrument | str, dtype=torch.float64, device=None):
        super().__init__()
        inst = load_instrument(instrument)
        self.instrument = inst
        self.dtype = dtype
        cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        self.cdtype = cdtype
        k, nx, df = inst.oversampling, inst.npix_over, inst.freq_step
        self.k, self.nx, self.df = k, nx, df
        self.nh = nx // 2 + 1  # half plane: all OTFs are Hermitian (real PSFs)
        self.cutoff = inst.cutoff_freq
        self.outer_scale = inst.outer_scale_m

        # Everything lives in the FFT's unshifted layout (null frequency at [0, 0]): no shifts.
        idx = torch.fft.ifftshift(torch.arange(nx, dtype=torch.float64) - nx // 2)
        fx = (idx * df)[:, None].expand(nx, nx)  # axis 0, as maoppy's fx
        fy = (idx * df)[None, :].expand(nx, nx)
        f2 = fx**2 + fy**2
        maskin = f2 < self.cutoff**2
        vk = (~maskin) * VK_CONSTANT * (1.0 / self.outer_scale**2 + f2) ** (-11.0 / 6.0)
        fmax = (nx // 2) * df
        self.fmax = fmax
        not_center = torch.ones(nx, nx, dtype=torch.bool)
        not_center[0, 0] = False
        # The corrected area (f < f_AO, null frequency excluded) is a small part of the grid:
        # the Moffat is evaluated there only; the von Karman part is one fixed array times
        # r0^(-5/3), so its Fourier transform and integral are computed once.
        corr = (maskin & not_center).flatten().nonzero().flatten()
        self.register_buffer("corr_idx", corr)
        self.register_buffer("fx2", (fx**2).flatten()[corr].to(dtype))
        self.register_buffer("fy2", (fy**2).flatten()[corr].to(dtype))
        self.register_buffer("fxy", (fx * fy).flatten()[corr].to(dtype))
        self.register_buffer("corr_in_fmax", (f2 < fmax**2).flatten()[corr].to(dtype))
        self.register_buffer("vk", vk.to(dtype))
        self.register_buffer("vk_fft", (torch.fft.rfft2(vk).real * df**2).to(dtype))
        self.vk_integral = float((vk * (f2 < fmax**2)).sum() * df**2)
        # Signed frequency indices / nx for the shift ramps: rows (dy) and half-plane columns (dx).
        self.register_buffer("freq_rows", (idx / nx).to(dtype))
        self.register_buffer("freq_cols", (torch.arange(self.nh, dtype=torch.float64) / nx).to(dtype))
        pixel = torch.sinc(idx[:, None] / nx * k) * torch.sinc(idx[None, : self.nh] / nx * k)
        self.register_buffer("pixel_tf", pixel.to(dtype))

        pupil = torch.as_tensor(inst.pupil_array, dtype=torch.float64)
        self.register_buffer("pupil", pupil.to(dtype))
        self.pupil_norm = float((pupil**2).sum())
        self.m = inst.pupil_oversampling
        basis = torch.as_tensor(inst.static_basis, dtype=torch.float64)
        # nm -> rad at the image wavelength.
        self.register_buffer("basis_rad", (basis * 2 * math.pi * 1e-9 / inst.wavelength_m).to(dtype))
        self.register_buffer("otf_static0", self._otf_static(None)[0].detach())
        if device is not None:
            self.to(device)

    @property
    def n_static(self) -> int:
        return int(self.basis_rad.shape[0])

    # ---- PSD and OTF -------------------------------------------------------------------
    def _psd_parts(self, p: torch.Tensor):
        """r0^(-5/3) (N,), corrected-area PSD (N, M) on ``corr_idx`` [rad² m²], integral (N,) [rad²]."""
        p = p.to(self.dtype)
        r0, bck, amp, alpha, ratio, theta, beta = (p[:, i, None] for i in range(7))
        ax, ay = alpha * ratio, alpha / ratio
        c, s, s2 = torch.cos(theta), torch.sin(theta), torch.sin(2 * theta)
        rxx = (c / ax) ** 2 + (s / ay) ** 2
        rxy = s2 / ay**2 - s2 / ax**2
        ryy = (c / ay) ** 2 + (s / ax) ** 2
        u = rxx * self.fx2 + rxy * self.fxy + ryy * self.fy2
        # Moffat normalised to unit integral between the central pixel and the AO cut-off.
        r_in = (1 + math.sqrt(2)) / 2 * self.df / 2
        f_out = (1 + self.cutoff**2 / (ax * ay)) ** (1 - beta)
        f_in = (1 + r_in**2 / (ax * ay)) ** (1 - beta)
        norm = (beta - 1) / (math.pi * ax * ay * (f_in - f_out))
        corrected = bck + amp * norm * (1 + u) ** (-beta)
        r0_factor = r0[:, 0] ** (-5.0 / 3.0)
        integral_out = VK_CONSTANT * 6 * math.pi / 5 * (r0[:, 0] * self.fmax) ** (-5.0 / 3.0)
        integral = (r0_factor * self.vk_integral + (corrected * self.corr_in_fmax).sum(dim=1) * self.df**2
                    + integral_out)
        return r0_factor, corrected, integral

    def _scatter(self, corrected: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(corrected.shape[0], self.nx * self.nx, dtype=corrected.dtype, device=corrected.device)
        return out.index_copy(1, self.corr_idx, corrected).reshape(-1, self.nx, self.nx)

    def psd(self, p: torch.Tensor):
        """Phase PSD (N, nx, nx) [rad² m²] (unshifted layout) and its integral up to infinity [rad²]."""
        r0_factor, corrected, integral = self._psd_parts(p)
        return r0_factor[:, None, None] * self.vk + self._scatter(corrected), integral

    def _pupil_field(self, static):
        """Complex pupil field (N, nf, nf) zero-padded on the fine grid, and its phase basis."""
        n = self.pupil.shape[0]
        nf = self.nx * self.m
        if static is None or self.n_static == 0:
            field = self.pupil.to(self.cdtype)[None]
        else:
            phase = torch.einsum("nk,kij->nij", static.to(self.dtype), self.basis_rad)
            field = self.pupil * torch.exp(1j * phase.to(self.cdtype))
        tab = torch.zeros(field.shape[0], nf, nf, dtype=self.cdtype, device=self.pupil.device)
        tab[:, :n, :n] = field
        return tab

    def _intensity_to_otf(self, intensity: torch.Tensor) -> torch.Tensor:
        """OTF on the image grid from a focal-plane intensity computed on the fine grid.

        A pupil drawn m times finer gives the focal plane over an m times wider field; sampling
        its OTF every m-th frequency is the same as folding that field with the image period,
        which costs an FFT of the image size only.
        """
        nx, m = self.nx, self.m
        if m > 1:
            lead = intensity.shape[:-2]
            intensity = intensity.reshape(*lead, m, nx, m, nx).sum(dim=(-4, -2))
        otf = torch.fft.ihfft2(intensity) / (m * m * self.pupil_norm)
        return otf * self.pixel_tf

    def _otf_static(self, static: torch.Tensor | None) -> torch.Tensor:
        """Static OTF (N, nx, nx//2+1), half plane, including the pixel transfer function."""
        return self._intensity_to_otf(torch.fft.fft2(self._pupil_field(static)).abs() ** 2)

    def static_otf_and_derivatives(self, static: torch.Tensor):
        """Static OTF (N, nx, nh) and its derivatives (N, K, nx, nh) w.r.t. the modes [1/nm] (half plane).

        d|F(E)|²/dmu_i = -2 Im(conj(F(E)) F(b_i E)) for E = P exp(i sum_i mu_i b_i): one FFT per
        mode, much cheaper than automatic differentiation through the complex pipeline.
        """
        tab = self._pupil_field(static)
        focal = torch.fft.fft2(tab)
        n = self.pupil.shape[0]
        weighted = torch.zeros(tab.shape[0], self.n_static, *tab.shape[1:], dtype=self.cdtype, device=tab.device)
        weighted[..., :n, :n] = self.basis_rad[None] * tab[:, None, :n, :n]
        d_intensity = -2 * (focal.conj()[:, None] * torch.fft.fft2(weighted)).imag
        return self._intensity_to_otf(focal.abs() ** 2), self._intensity_to_otf(d_intensity)

    def otf(self, psd_params, static=None, dx=None, dy=None, otf_static=None) -> torch.Tensor:
        """Total OTF (N, nx, nx//2+1): half plane, unshifted layout, including the centring ramp.

        ``otf_static`` (N, nx, nx//2+1), when given, replaces the static OTF computed from ``static``.
        """
        r0_factor, corrected, integral = self._psd_parts(psd_params)
        b_phi = r0_factor[:, None, None] * self.vk_fft + torch.fft.rfft2(self._scatter(corrected)).real * self.df**2
        otf_turb = torch.exp(b_phi - integral[:, None, None])
        if otf_static is not None:
            otf_stat = otf_static
        elif static is None or self.n_static == 0:
            otf_stat = self.otf_static0[None]
        else:
            otf_stat = self._otf_static(static)
        n, device = corrected.shape[0], corrected.device
        zero = torch.zeros(n, dtype=self.dtype, device=device)
        dx = zero if dx is None else torch.as_tensor(dx, dtype=self.dtype, device=device).expand(n)
        dy = zero if dy is None else torch.as_tensor(dy, dtype=self.dtype, device=device).expand(n)
        # Shift by (dx, dy) image pixels, centre the binned PSF on pixel npix//2 whatever the
        # oversampling (as maoppy does), and move the origin to the array centre (an fftshift):
        # separable ramps, 2 nx complex exponentials per PSF instead of nx².
        shift = (self.k - 1) / 2 + self.nx / 2
        ramp_x = torch.exp(-2j * math.pi * ((self.k * dx + shift)[:, None] * self.freq_cols).to(self.cdtype))
        ramp_y = torch.exp(-2j * math.pi * ((self.k * dy + shift)[:, None] * self.freq_rows).to(self.cdtype))
        return otf_turb * otf_stat * ramp_y[:, :, None] * ramp_x[:, None, :]

    def otf_to_psf(self, otf: torch.Tensor) -> torch.Tensor:
        """PSFs (..., npix, npix) from half-plane OTFs (..., nx, nx//2+1), binned if oversampled."""
        psf = torch.fft.irfft2(otf, s=(self.nx, self.nx))
        if self.k > 1:
            k, npix = self.k, self.nx // self.k
            psf = psf.reshape(*psf.shape[:-2], npix, k, npix, k).sum(dim=(-3, -1))
        return psf

    def psf_and_derivatives(self, psd_params, dx, dy, otf_static):
        """PSFs (N, H, W) and their derivatives (N, 9, H, W) w.r.t. the 7 PSD parameters, dx, dy.

        The OTF is exp(B_phi - integral) x static x ramps, so each PSD derivative only needs the
        derivative of the corrected-area PSD (forward mode, cheap) and one FFT pair; the shift
        derivatives are the OTF times the ramp's frequency.
        """
        from torch.func import jvp

        n = psd_params.shape[0]
        psd_params = psd_params.to(self.dtype)
        rep = psd_params.repeat_interleave(7, dim=0)
        tangents = torch.eye(7, dtype=self.dtype, device=rep.device).repeat(n, 1)
        _, (d_r0f, d_corr, d_int) = jvp(self._psd_parts, (rep,), (tangents,))
        d_bphi = (d_r0f[:, None, None] * self.vk_fft
                  + torch.fft.rfft2(self._scatter(d_corr)).real * self.df**2 - d_int[:, None, None])
        otf = self.otf(psd_params, dx=dx, dy=dy, otf_static=otf_static)
        d_otf = otf[:, None] * d_bphi.reshape(n, 7, self.nx, self.nh)
        d_dx = otf * (-2j * math.pi * self.k * self.freq_cols)
        d_dy = otf * (-2j * math.pi * self.k * self.freq_rows[:, None])
        d_otf = torch.cat([d_otf, d_dx[:, None], d_dy[:, None]], dim=1)
        return self.otf_to_psf(otf), self.otf_to_psf(d_otf)

    def forward(self, psd_params, static=None, dx=None, dy=None, otf_static=None) -> torch.Tensor:
        """PSFs (N, npix, npix) for PSD parameters (N, 7), static modes (N, K) [nm], shifts [pix]."""
        return self.otf_to_psf(self.otf(psd_params, static=static, dx=dx, dy=dy, otf_static=otf_static))
