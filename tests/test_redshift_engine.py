"""Redshift engine: exact-template chi2, recovery of simulated spectra, consistency of paths."""

import numpy as np
import pytest

from astrolearn.redshift.engine import (EngineConfig, RedshiftEngine, SMALL_BATCH, STATUS_NO_DATA,
                                        lsf_sigma_from_resolution)
from astrolearn.redshift.pdf import ZGrid
from astrolearn.redshift.simulate import NispConfig, TRUTH_COLUMNS, simulate_batch

WAVE = NispConfig().wave
LSF = lsf_sigma_from_resolution(WAVE, 450.0)
GRID = ZGrid(0.8, 1.9, 1e-4)


@pytest.fixture(scope="module")
def engine():
    return RedshiftEngine(WAVE, LSF, EngineConfig(grid=GRID, workers=1))


@pytest.fixture(scope="module")
def engine64():
    return RedshiftEngine(WAVE, LSF, EngineConfig(grid=ZGrid(1.1, 1.5, 1e-4), dtype="float64", stride=1, workers=1))


def test_chi2_of_exact_template_is_zero(engine64):
    m = engine64.model
    i = 1000
    z0 = engine64.z[i]
    A, names = m.matrix(z0)
    x = np.zeros(len(names))
    x[names.index("Halpha")] = 3e-16
    x[names.index("NII")] = 1e-16
    x[names.index("SIII")] = 5e-17
    x[names.index("kcorrect1")] = 4e-19
    x[names.index("kcorrect4")] = 2e-19
    flux = (A @ x)[None]
    ivar = np.full_like(flux, 1.0 / (2.6e-18) ** 2)
    chi = engine64.chi2_at(flux, ivar, np.array([i - 5, i, i + 5]))[0]
    assert chi[1] < 1e-8
    assert chi[0] > 1.0 and chi[2] > 1.0
    res = engine64.run(flux, ivar)
    assert res.z[0] == pytest.approx(z0, abs=1e-9)
    co = dict(zip(res.coeff_names, res.coeffs[0]))
    assert co["Halpha"] == pytest.approx(3e-16, rel=1e-6)
    assert co["NII"] == pytest.approx(1e-16, rel=1e-6)


def test_bright_simulated_spectra_are_recovered(engine):
    cfg = NispConfig(zmin=0.9, zmax=1.8, flux_min=6e-16, flux_max=1e-15, no_line_fraction=0.0)
    flux, noise, params = simulate_batch(cfg, np.random.default_rng(5), 12)
    z = params[:, TRUTH_COLUMNS.index("z")]
    res = engine.run(flux, 1.0 / noise.astype(float) ** 2)
    ok = np.abs(res.z - z) / (1 + z) < 0.003
    assert ok.mean() >= 11 / 12
    assert np.all(res.z_proba[ok] > 0.5)
    # log PDF normalised over the grid
    w = GRID.weights
    assert np.allclose((np.exp(res.log_pdf.astype(float)) * w).sum(axis=1), 1.0, atol=1e-4)
    # every estimate is an exactly computed grid point
    assert all(res.exact[i, res.candidates.index[i, 0]] for i in range(len(z)))


def test_stride_pass_matches_exact_chi2():
    grid = ZGrid(1.0, 1.5, 1e-4)
    engine = RedshiftEngine(WAVE, LSF, EngineConfig(grid=grid, workers=1))
    cfg = NispConfig(zmin=1.1, zmax=1.4, flux_min=3e-16, flux_max=5e-16, no_line_fraction=0.0)
    flux, noise, params = simulate_batch(cfg, np.random.default_rng(2), 2)
    ivar = 1.0 / noise.astype(float) ** 2
    assert engine.stride == 6
    chi, exact = engine.chi2_grid(flux, ivar)
    full = engine.chi2_at(flux, ivar, np.arange(grid.size))
    assert np.allclose(chi[exact], full[exact], rtol=1e-4, atol=1e-2)
    # interpolated points stay close to the exact curve
    assert np.median(np.abs(chi - full)) < 0.05


@pytest.mark.parametrize("n", [3, SMALL_BATCH + 2])  # per-spectrum products, then the shared GEMM
def test_pair_and_shared_normal_equations_agree(engine, n):
    rng = np.random.default_rng(0)
    F = rng.normal(size=(n, WAVE.size))
    W = np.abs(rng.normal(size=(n, WAVE.size))) + 0.5
    zi = np.arange(1000, 1010)
    shared = engine._chi2_shared(F, W, (W * F * F).sum(1), zi)
    spec = np.repeat(np.arange(n), len(zi))
    pairs, _ = engine._fit_pairs(F, W, (W * F * F).sum(1), spec, np.tile(zi, n), need_x=False)
    assert np.allclose(shared.ravel(), pairs, rtol=1e-4, atol=1e-3)


def test_torch_solver_agrees_with_numba():
    cfg = EngineConfig(grid=ZGrid(1.2, 1.4, 2e-4), solver="torch", workers=1)
    eng_t = RedshiftEngine(WAVE, LSF, cfg)
    eng_n = RedshiftEngine(WAVE, LSF, EngineConfig(grid=cfg.grid, workers=1))
    flux, noise, _ = simulate_batch(NispConfig(zmin=1.25, zmax=1.35), np.random.default_rng(1), 2)
    ivar = 1.0 / noise.astype(float) ** 2
    zi = np.arange(0, cfg.grid.size, 7)
    a, b = eng_t.chi2_at(flux, ivar, zi), eng_n.chi2_at(flux, ivar, zi)
    assert np.allclose(a, b, rtol=1e-4, atol=1e-2)


def test_spectrum_without_valid_pixels_is_reported_not_fatal(engine):
    flux, noise, _ = simulate_batch(NispConfig(zmin=1.2, zmax=1.3, flux_min=5e-16), np.random.default_rng(3), 2)
    ivar = 1.0 / noise.astype(float) ** 2
    ivar[1] = 0.0
    res = engine.run(flux, ivar)
    assert res.status[1] == STATUS_NO_DATA and np.isnan(res.z[1])
    assert res.status[0] == 0 and np.isfinite(res.z[0])
    assert np.isfinite(res.log_pdf[1]).all()  # flat (prior) PDF, still normalised


def test_masked_pixels_are_ignored(engine):
    flux, noise, _ = simulate_batch(NispConfig(zmin=1.2, zmax=1.3, flux_min=5e-16), np.random.default_rng(4), 1)
    ivar = 1.0 / noise.astype(float) ** 2
    zi = np.arange(0, GRID.size, 50)
    ref = engine.chi2_at(flux, ivar, zi)
    bad = flux.astype(float)
    bad[0, 100:110] = np.nan
    ivar2 = ivar.copy()
    ivar2[0, 100:110] = 0.0
    other = engine.chi2_at(bad, ivar2, zi)
    assert np.all(np.isfinite(other))
    assert np.all(other <= ref + 1e-3)  # fewer pixels: never a worse fit


def test_device_must_exist():
    from astrolearn.errors import UserError

    with pytest.raises(UserError):
        RedshiftEngine(WAVE, LSF, EngineConfig(grid=GRID, device="nodevice"))
