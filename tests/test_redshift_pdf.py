"""Redshift grids, PDF normalisation and the Amazed candidate / redshift-probability conventions."""

import math

import numpy as np
import pytest

from astrolearn.errors import UserError
from astrolearn.redshift import pdf


def test_log_grid_is_regular_in_ln1pz():
    g = pdf.ZGrid(0.01, 3.0, 1e-4, "log")
    z = g.z
    assert z[0] == pytest.approx(0.01)
    assert z[-1] <= 3.0 and z[-1] > 3.0 - 4e-4
    assert np.allclose(np.diff(np.log1p(z)), 1e-4)
    assert g.size == 13764
    assert g.meta() == {"zmin": 0.01, "zmax": 3.0, "zstep": 1e-4, "sampling": "log", "nz": 13764}


def test_lin_grid_and_bad_grids():
    g = pdf.ZGrid(0.0, 1.0, 0.01, "lin")
    assert g.size == 101 and np.allclose(np.diff(g.z), 0.01)
    for args in ((1.0, 0.5, 1e-4, "log"), (0.0, 1.0, -1.0, "log"), (0.0, 1.0, 1e-4, "cubic")):
        with pytest.raises(UserError):
            pdf.ZGrid(*args)


def two_peaks(grid, z1=1.2, s1=0.002, w1=0.7, z2=1.6, s2=0.003):
    z = grid.z
    p = w1 * np.exp(-0.5 * ((z - z1) / s1) ** 2) / (s1 * math.sqrt(2 * math.pi))
    p += (1 - w1) * np.exp(-0.5 * ((z - z2) / s2) ** 2) / (s2 * math.sqrt(2 * math.pi))
    with np.errstate(divide="ignore"):
        return np.log(p)


def test_normalisation_integrates_to_one():
    g = pdf.ZGrid(0.5, 2.5, 1e-4)
    lp = pdf.normalise_log_pdf(two_peaks(g)[None] + 123.0, g)
    assert np.sum(g.weights * np.exp(lp[0])) == pytest.approx(1.0, abs=1e-12)


def test_probabilities_stay_within_bounds_for_real_spectrum_chi2():
    # DESI-like case: chi2 ~ 17000 (log L ~ -8400) and a peak narrower than the grid step; the
    # normalisation used to round at ~1e-12 there (redshift probability 1.0000000000005)
    g = pdf.ZGrid(0.0, 1.5, 1e-4)
    worst_integral, worst_proba = 0.0, 0.0
    for offset in np.linspace(-9000.0, -7000.0, 21):
        for zc in (0.3687, 0.36875, 0.00727):
            lp = pdf.normalise_log_pdf((offset - 0.5 * ((g.z - zc) / 2e-6) ** 2)[None], g)
            worst_integral = max(worst_integral, abs(np.sum(g.weights * np.exp(lp[0])) - 1.0))
            worst_proba = max(worst_proba, np.nanmax(pdf.candidates(lp, g, n=3).proba))
    assert worst_integral < 1e-14
    assert worst_proba <= 1.0
    # a PDF normalised elsewhere (here to 1 + 1e-6, as after a float32 round trip): clipped
    c = pdf.candidates(lp + 1e-6, g, n=3)
    assert np.nanmax(c.proba) == 1.0 and np.nanmin(c.proba) >= 0.0


def test_candidates_dz_and_probability_on_synthetic_pdf():
    g = pdf.ZGrid(0.5, 2.5, 1e-4)
    lp = pdf.normalise_log_pdf(two_peaks(g)[None], g)
    c = pdf.candidates(lp, g, n=3)
    assert c.z[0, 0] == pytest.approx(1.2, abs=2e-4)
    assert c.z[0, 1] == pytest.approx(1.6, abs=2e-4)
    # log PDF is exactly quadratic around each peak: Dz = sigma of the Gaussian
    assert c.dz[0, 0] == pytest.approx(0.002, rel=0.02)
    assert c.dz[0, 1] == pytest.approx(0.003, rel=0.02)
    # probability within +-3 Dz: weight * erf(3 / sqrt 2) = weight * 0.9973
    assert c.proba[0, 0] == pytest.approx(0.7 * 0.9973, abs=2e-3)
    assert c.proba[0, 1] == pytest.approx(0.3 * 0.9973, abs=2e-3)
    assert np.nansum(c.proba[0]) <= 1.0 + 1e-9


def test_overlapping_windows_are_split_like_amazed():
    # Amazed unit test Deltaz_overlapping1: z 1.0 and 1.5, Dz = 0.5/3 -> [0.5, 1.25], [1.25, 2.0]
    win = pdf.integration_windows(np.array([1.0, 1.5]), np.array([0.5 / 3, 0.5 / 3]), 0.0, 5.0)
    assert win[0] == pytest.approx([0.5, 1.25])
    assert win[1] == pytest.approx([1.25, 2.0])
    # no overlap: unchanged
    win = pdf.integration_windows(np.array([1.0, 4.0]), np.array([0.5 / 3, 0.5 / 3]), 0.0, 5.0)
    assert win[0] == pytest.approx([0.5, 1.5]) and win[1] == pytest.approx([3.5, 4.5])


def test_split_windows_do_not_double_count():
    g = pdf.ZGrid(0.5, 2.5, 1e-4)
    lp = pdf.normalise_log_pdf(two_peaks(g, z1=1.200, s1=0.004, w1=0.5, z2=1.215, s2=0.004)[None], g)
    c = pdf.candidates(lp, g, n=2, separation=0.005)
    assert np.nansum(c.proba[0]) <= 1.0 + 1e-9
    assert c.proba[0, 0] > 0.4 and c.proba[0, 1] > 0.4


def test_quadratic_dz_falls_back_to_default():
    z = np.linspace(1.0, 1.1, 101)
    assert pdf.quadratic_dz(np.zeros(101), z, 50) == pytest.approx(1e-3 * (1 + z[50]))


def test_prior_file(tmp_path):
    p = tmp_path / "prior.txt"
    p.write_text("# z density\n0 0\n1 1\n2 0\n")
    g = pdf.ZGrid(0.1, 1.9, 1e-3)
    lp = pdf.log_prior(g, pdf.read_prior(p))
    assert lp[np.argmin(abs(g.z - 1.0))] == pytest.approx(0.0, abs=1e-3)
    assert lp[0] < lp[len(lp) // 2]
    bad = tmp_path / "bad.txt"
    bad.write_text("z density\n")
    with pytest.raises(UserError):
        pdf.read_prior(bad)
