"""IGM transmission (Inoue et al. 2014) and the Lyman-alpha line of the redshift engine."""

import numpy as np
import pytest
import torch

from astrolearn.redshift.engine import EngineConfig, RedshiftEngine, SpectralModel
from astrolearn.redshift.igm import LYMAN_ALPHA, igm_transmission
from astrolearn.redshift.pdf import ZGrid

# eazy-py 0.8.7, eazy.igm.Inoue14().full_IGM(z, wave): an independent implementation of the model
EAZY_INOUE14 = [
    (2.2, [3700.0, 3850.0], [0.864018, 0.844284]),
    (3.15, [3700.0, 4200.0, 4800.0, 5040.0], [0.453755, 0.699543, 0.682336, 0.632723]),
    (4.5, [5000.0, 5500.0, 6600.0], [0.209374, 0.38043, 0.289489]),
    (6.0, [8400.0], [0.0140328]),
]


@pytest.mark.parametrize("z, wave, expected", EAZY_INOUE14)
def test_igm_transmission_matches_eazy(z, wave, expected):
    assert np.allclose(igm_transmission(wave, [z])[0], expected, rtol=1e-5, atol=0)


def test_igm_transmission_is_one_redward_of_lyman_alpha_and_falls_with_redshift():
    wave = np.linspace(3600.0, 9800.0, 3000)
    z = np.array([1.5, 2.5, 3.5, 4.5])
    t = igm_transmission(wave, z)
    assert np.all((t > 0) & (t <= 1))
    red = wave[None, :] >= LYMAN_ALPHA * (1 + z[:, None])
    assert np.all(t[red] == 1.0) and np.all(t[~red] < 1.0)
    assert np.all(np.diff(t, axis=0) <= 0)  # more absorbers in front of a more distant source
    # NISP wavelengths: untouched below z = 8.9
    assert np.all(igm_transmission(np.linspace(12000, 19000, 100), [3.0, 8.8]) == 1.0)


def desi_like_model():
    wave = np.arange(3600.0, 9800.0, 0.8)
    return SpectralModel(wave, 0.7, dtype=torch.float64)


def test_lyman_alpha_profile_conserves_flux_and_skews_red():
    model = desi_like_model()
    A, names = model.matrix(3.15)
    for name in ("Lya", "LyaBroad"):
        prof = A[:, names.index(name)]
        assert np.sum(prof * model.pixel_width) == pytest.approx(1.0, abs=1e-6)
        centre = LYMAN_ALPHA * 4.15
        mean = np.sum(prof * model.pixel_width * model.wave)
        assert mean > centre  # red wing: the blue one is scattered away
    # wider profile for the broad group
    w = [np.sum(A[:, names.index(n)] > 0.5 * A[:, names.index(n)].max()) for n in ("Lya", "LyaBroad")]
    assert w[1] > 2 * w[0]
    # continuum blueward of Lyman alpha is absorbed, redward untouched
    blue, red = model.wave < 0.99 * LYMAN_ALPHA * 4.15, model.wave > 1.01 * LYMAN_ALPHA * 4.15
    k = names.index("kcorrect0")
    bare = model.templates.at_wavelengths(model.wave / 4.15)[:, 0]
    igm = igm_transmission(model.wave, [3.15])[0]
    assert np.allclose(A[:, k], bare * igm, rtol=1e-5, atol=1e-12 * bare.max())
    assert np.all(igm[red] == 1.0) and np.all(igm[blue] < 0.8)


def test_engine_reads_a_skewed_line_with_a_continuum_break_as_lyman_alpha():
    """A z = 3.2 emitter: one red-skewed line and a continuum absorbed blueward of it.

    The same line could be [OII] at z = 0.36; the profile and the IGM break decide.
    """
    model = desi_like_model()
    z_true = 3.2
    A, names = model.matrix(z_true)
    rng = np.random.default_rng(4)
    flux = 30.0 * A[:, names.index("LyaBroad")] + 0.3 * A[:, names.index("kcorrect1")] / A[:, names.index("kcorrect1")].max()
    sigma = 0.05
    flux = flux + rng.normal(0.0, sigma, flux.size)
    ivar = np.full(flux.size, 1 / sigma**2)
    eng = RedshiftEngine(model.wave, 0.7, EngineConfig(grid=ZGrid(0.0, 4.0), workers=1))
    res = eng.run(flux[None], ivar[None])
    assert abs(res.z[0] - z_true) < 0.003 * (1 + z_true)
    assert res.z_proba[0] > 0.9


def test_narrowest_line_sigma_follows_the_group_widths():
    """Lyman alpha's own widths (150, 450 km/s) never narrow the line sampling of the engine."""
    wave = np.arange(3600.0, 9800.0, 0.8)
    lines = SpectralModel(wave, 0.7, dtype=torch.float64)
    bare = SpectralModel(wave, 0.7, groups=(), dtype=torch.float64)  # continuum only: the model's vdisp
    expected = float(np.min(np.hypot(0.7, wave * 100.0 / 299792.458) / wave))
    assert lines.min_line_sigma_ln() == pytest.approx(expected, rel=1e-12)
    assert bare.min_line_sigma_ln() == pytest.approx(expected, rel=1e-12)
