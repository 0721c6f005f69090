"""Petal optics against independent facts: twin ambiguity, Marechal, FWHM, flux, piston modulo lambda, CRB."""

import math

import numpy as np
import pytest
import torch

from astrolearn.cophasing.fit import LsqFitter, crb, fisher, jacobian
from astrolearn.cophasing.optics import Optics, observable, twin_modes
from astrolearn.cophasing.simulate import draw_modes, render


def _psf(optics, modes):
    return optics.psf(torch.as_tensor(np.atleast_2d(modes), dtype=torch.float64)).numpy()


def _random(n, seed, piston=300.0, tiptilt=150.0):
    return draw_modes({"piston_nm": piston, "tiptilt_nm": tiptilt}, n, np.random.default_rng(seed))


def test_in_focus_image_cannot_tell_phi_from_its_point_reflected_opposite_but_diversity_can():
    modes = _random(3, 0)
    twin = twin_modes(modes)
    assert optics_differ(modes, twin)
    single = Optics(diversity_nm=0.0)
    a, b = _psf(single, modes), _psf(single, twin)
    assert np.abs(a - b).max() < 1e-12 * a.max()  # the same image: one image cannot decide
    pair = Optics(diversity_nm=200.0)
    a, b = _psf(pair, modes), _psf(pair, twin)
    assert np.abs(a[:, 0] - b[:, 0]).max() < 1e-12 * a.max()
    # The defocused image differs by a large fraction of its peak: the pair decides.
    assert (np.abs(a[:, 1] - b[:, 1]).max(axis=(-2, -1)) > 0.1 * a[:, 1].max(axis=(-2, -1))).all()


def optics_differ(modes, twin):
    """The twin is another wavefront (not the same one written differently)."""
    return (Optics().wfe_nm(observable(modes) - observable(twin)) > 50).all()


def test_strehl_follows_marechal_for_small_errors_and_the_image_peak_agrees():
    optics = Optics(npix=33, diversity_nm=0.0)  # odd: a pixel on the optical axis
    rng = np.random.default_rng(1)
    for sigma in (10.0, 20.0, 30.0):
        modes = np.zeros((1, 12))
        modes[0, :4] = rng.normal(0, 1, 4)  # pistons only: the peak stays on the axis
        modes = observable(modes)
        modes *= sigma / optics.wfe_nm(modes)[0]
        strehl = optics.strehl(modes)[0]
        assert strehl == pytest.approx(math.exp(-(2 * math.pi * sigma / 650) ** 2), rel=0.02)
        peak = _psf(optics, modes)[0, 0, 16, 16] / _psf(optics, np.zeros((1, 12)))[0, 0, 16, 16]
        assert peak == pytest.approx(strehl, rel=1e-9)


def test_full_disc_fwhm_is_1_03_lambda_over_d():
    lam, d = 650.0, 0.3
    lod_mas = lam * 1e-9 / d * 180 / math.pi * 3600e3
    optics = Optics(obscuration=0.0, gap_m=0.0, npix=33, pixel_scale_mas=lod_mas / 8, diversity_nm=0.0, npup=128)
    row = _psf(optics, np.zeros((1, 12)))[0, 0, 16]
    half = row.max() / 2
    right = next(i for i in range(16, 33) if row[i] < half)
    x = right - 1 + (row[right - 1] - half) / (row[right - 1] - row[right])  # linear interpolation
    fwhm = 2 * (x - 16) / 8  # in lambda/D
    assert fwhm == pytest.approx(1.029, rel=0.02)


def test_flux_is_conserved_and_wfe_counts_tip_in_nm_rms_over_the_petal():
    optics = Optics(npix=128, diversity_nm=0.0)
    flat = _psf(optics, np.zeros((1, 12))).sum()
    assert 0.99 < flat <= 1.0
    assert _psf(optics, _random(2, 2, 50.0, 20.0)).sum(axis=(-2, -1)) == pytest.approx(flat, abs=2e-3)
    tip = np.zeros((1, 12))
    tip[0, 4] = 40.0  # tip of petal 1, 40 nm RMS over the petal (a quarter of the pupil)
    assert Optics().wfe_nm(tip)[0] == pytest.approx(40.0 / 2, rel=1e-6)
    piston = np.zeros((1, 12))
    piston[0, :4] = 100.0  # common piston: no error
    assert Optics().wfe_nm(piston)[0] == pytest.approx(0.0, abs=1e-9)


def test_piston_is_known_modulo_the_wavelength_only_in_monochromatic_light():
    modes = _random(1, 3, 100.0, 30.0)
    shifted = modes.copy()
    shifted[0, 1] += 650.0
    mono = Optics(wavelengths_nm=[650.0])
    a, b = _psf(mono, modes), _psf(mono, shifted)
    assert np.abs(a - b).max() < 1e-9 * a.max()
    broad = Optics(wavelengths_nm=[600.0, 650.0, 700.0])
    a, b = _psf(broad, modes), _psf(broad, shifted)
    assert np.abs(a - b).max() > 0.02 * a.max()


def test_broadband_pixels_keep_their_angular_size():
    optics = Optics(wavelengths_nm=[600.0, 700.0])
    assert optics.sampling() == pytest.approx(600e-9 / 0.3 / (200 * math.pi / 180 / 3600e3))
    assert optics.sampling() > 2  # Nyquist at the shortest wavelength


def test_jacobian_matches_finite_differences_and_crb_scales_as_one_over_sqrt_photons():
    optics = Optics(wavelengths_nm=[650.0])
    modes = _random(1, 4, 60.0, 30.0)
    jac = jacobian(optics, modes)
    h = 1e-3
    step = np.zeros((1, 12))
    step[0, 6] = h
    fd = (_psf(optics, modes + step) - _psf(optics, modes - step)) / (2 * h)
    np.testing.assert_allclose(jac[..., 6].numpy(), fd, atol=1e-6 * np.abs(fd).max())
    low = crb(fisher(optics, modes, 1e4, read_noise_e=0.0, jac=jac))
    high = crb(fisher(optics, modes, 1e6, read_noise_e=0.0, jac=jac))
    np.testing.assert_allclose(low / high, 10.0, rtol=1e-6)
    assert np.isfinite(low).all() and (low > 0).all()


def test_least_squares_recovers_small_errors_from_a_noiseless_pair():
    optics = Optics(wavelengths_nm=[650.0])
    truth = _random(2, 5, 40.0, 20.0)
    images = render(optics, truth, 1e6, None)
    fit = LsqFitter(optics, starts=1, max_iter=80).fit(images, with_std=False)
    assert optics.wfe_nm(fit.modes - observable(truth)).max() < 1.0
