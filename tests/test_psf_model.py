import math
import warnings

import numpy as np
import pytest
import torch

from astrolearn.psf.instruments import Instrument
from astrolearn.psf.model import PsfaoModel, r0_to_500nm, r0_to_wavelength
from psf_helpers import circular

PARAMS = [
    # D, occ, pixel [mas], wavelength [um], nact, npix, (r0, C, A, alpha, ratio, theta, beta), dx, dy
    (10.5, 0.2311, 9.942, 1.6455, 21, 128, (0.3, 1e-2, 1.0, 0.05, 1.2, 0.3, 1.6), 0.0, 0.0),
    (10.5, 0.2311, 9.942, 2.12, 21, 64, (0.15, 5e-2, 3.0, 0.02, 0.7, -0.4, 2.8), 0.3, -0.2),
    (8.114, 0.14, 12.27, 2.18, 40, 64, (0.5, 1e-3, 0.5, 0.1, 0.8, 0.0, 2.5), 0.0, 0.0),
    # undersampled (lambda/D < 2 pixels): oversampled computation then binning
    (8.114, 0.14, 30.0, 1.2, 40, 64, (0.2, 5e-3, 2.0, 0.1, 1.0, 0.0, 1.5), 0.1, 0.2),
    (8.114, 0.14, 50.0, 1.2, 40, 64, (0.2, 5e-3, 2.0, 0.1, 1.3, 0.5, 1.5), -0.25, 0.4),
]


@pytest.mark.parametrize("D, occ, pix, wl, nact, npix, params, dx, dy", PARAMS)
def test_agrees_with_maoppy(D, occ, pix, wl, nact, npix, params, dx, dy):
    maoppy = pytest.importorskip("maoppy")
    from maoppy.instrument import Instrument as MaoppyInstrument
    from maoppy.psfmodel import Psfao

    system = MaoppyInstrument(D=D, occ=occ, res=pix / 206264806.247, Nact=nact)
    reference_model = Psfao((npix, npix), system=system, samp=system.samp(wl * 1e-6), lext=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = reference_model(list(params), dx=dx, dy=dy)
    inst = Instrument(name="c", diameter_m=D, obscuration=occ, pixel_scale_mas=pix, wavelength_um=wl, nact=nact,
                      npix=npix, pupil={"kind": "circular", "scale": "maoppy"})
    ours = PsfaoModel(inst)(torch.tensor([params]), dx=dx, dy=dy)[0].numpy()
    assert maoppy is not None
    assert np.abs(ours - reference).max() / reference.max() <= 1e-6


def test_batched_matches_single_and_float32():
    model64 = PsfaoModel(circular())
    model32 = PsfaoModel(circular(), dtype=torch.float32)
    p = torch.tensor([[0.3, 1e-2, 1.0, 0.05, 1.2, 0.3, 1.6], [0.1, 3e-2, 2.0, 0.08, 0.8, 0.0, 2.2]], dtype=torch.float64)
    batch = model64(p, dx=torch.tensor([0.1, -0.3]))
    single = model64(p[1:], dx=-0.3)
    assert torch.allclose(batch[1], single[0], atol=1e-14)
    f32 = model32(p.float(), dx=torch.tensor([0.1, -0.3]))
    assert (f32.double() - batch).abs().max() / batch.max() < 1e-5


def test_total_flux_and_shift_centroid():
    inst = circular(npix=128)
    psf = PsfaoModel(inst)(torch.tensor([[0.8, 1e-3, 0.2, 0.1, 1.0, 0.0, 2.0]]), dx=0.4, dy=-0.3)[0].numpy()
    assert 0.9 < psf.sum() <= 1.0 + 1e-9
    yy, xx = np.mgrid[:128, :128]
    core = psf * ((yy - 63.7) ** 2 + (xx - 64.4) ** 2 < 6**2)
    cx = (core * xx).sum() / core.sum() - 64
    cy = (core * yy).sum() / core.sum() - 64
    assert abs(cx - 0.4) < 0.02 and abs(cy + 0.3) < 0.02


def test_differentiable():
    model = PsfaoModel(circular())
    p = torch.tensor([[0.3, 1e-2, 1.0, 0.05, 1.2, 0.3, 1.6]], requires_grad=True)
    model(p).pow(2).sum().backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_static_derivative_matches_finite_difference():
    inst = circular(npix=64)
    model = PsfaoModel(inst)
    gen = torch.Generator().manual_seed(0)
    n = model.pupil.shape[0]
    model.basis_rad = torch.randn(3, n, n, generator=gen, dtype=torch.float64) * 1e-3 * model.pupil
    static = torch.tensor([[20.0, -40.0, 10.0]], dtype=torch.float64)
    otf, d_otf = model.static_otf_and_derivatives(static)
    eps = 1e-3
    for i in range(3):
        e = torch.zeros_like(static)
        e[0, i] = eps
        numeric = (model._otf_static(static + e) - model._otf_static(static - e)) / (2 * eps)
        assert (numeric - d_otf[:, i]).abs().max() <= 1e-6 * d_otf[:, i].abs().max()


def test_even_static_mode_sign_ambiguity():
    """phi(r) and -phi(-r) give the same PSF: an even mode's sign is invisible in focus."""
    inst = circular(npix=64)
    model = PsfaoModel(inst)
    n = model.pupil.shape[0]
    c = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    x, y = torch.meshgrid(c, c, indexing="ij")
    even = (x**2 + y**2) * model.pupil  # defocus-like: phi(-r) = phi(r)
    odd = x**3 * model.pupil  # coma-like: phi(-r) = -phi(r)
    model.basis_rad = torch.stack([even / even.abs().max(), odd / odd.abs().max()]) * 0.5
    p = torch.tensor([[0.4, 1e-3, 0.3, 0.1, 1.0, 0.0, 2.0]] * 2, dtype=torch.float64)
    even_pair = model(p, static=torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64))
    odd_pair = model(p, static=torch.tensor([[0.0, 1.0], [0.0, -1.0]], dtype=torch.float64))
    peak = even_pair.max()
    assert (even_pair[0] - even_pair[1]).abs().max() / peak < 1e-10
    # An odd mode's sign flips the image about the centre instead: visible.
    assert (odd_pair[0] - odd_pair[1]).abs().max() / peak > 1e-3


def test_r0_wavelength_scaling():
    assert math.isclose(r0_to_500nm(r0_to_wavelength(0.15, 1.6455e-6), 1.6455e-6), 0.15)
    assert math.isclose(r0_to_wavelength(0.1, 1e-6), 0.1 * 2**1.2)


def test_analytic_derivatives_match_finite_differences():
    model = PsfaoModel(circular(npix=64))
    p = torch.tensor([[0.4, 1e-2, 0.8, 0.07, 1.3, 0.4, 1.8]], dtype=torch.float64)
    dx, dy = torch.tensor([0.2], dtype=torch.float64), torch.tensor([-0.1], dtype=torch.float64)
    otf_s = model.otf_static0[None]
    psf, d = model.psf_and_derivatives(p, dx, dy, otf_s)
    assert torch.allclose(psf, model(p, dx=dx, dy=dy), atol=1e-14)
    for j in range(9):
        h = 1e-6 * (p[0, j].abs().item() if j < 7 else 1.0) + (1e-6 if j == 5 else 0.0)
        plus, minus = p.clone(), p.clone()
        dxp, dxm, dyp, dym = dx.clone(), dx.clone(), dy.clone(), dy.clone()
        if j < 7:
            plus[0, j] += h
            minus[0, j] -= h
        elif j == 7:
            dxp += h
            dxm -= h
        else:
            dyp += h
            dym -= h
        numeric = (model(plus, dx=dxp, dy=dyp) - model(minus, dx=dxm, dy=dym)) / (2 * h)
        assert (numeric - d[:, j]).abs().max() <= 1e-5 * d[:, j].abs().max(), j
