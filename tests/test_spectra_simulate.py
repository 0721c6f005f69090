"""The star / galaxy / QSO simulator: determinism, classes, truth, the QSO model against DESI."""

import json

import h5py
import numpy as np
import pytest

from astrolearn.cli import main
from astrolearn.spectra import qso
from astrolearn.spectra.simulate import CLASSES, TRUTH_COLUMNS, SpectraConfig, simulate_batch, star_library
from astrolearn.spectra.stars import BASEL, load_stars


@pytest.mark.parametrize("grid, npix", [("nisp", 512), ("optical", 1550)])
def test_batch_is_deterministic_with_truth_that_matches(grid, npix):
    cfg = SpectraConfig(grid=grid, truncate_fraction=0.0)
    lib = star_library(cfg)
    f1, s1, p1 = simulate_batch(cfg, np.random.default_rng(3), 300, library=lib)
    f2, _, p2 = simulate_batch(cfg, np.random.default_rng(3), 300, library=lib)
    assert f1.shape == (300, npix) and np.array_equal(f1, f2) and np.array_equal(p1, p2)
    t = dict(zip(TRUTH_COLUMNS, p1.T))
    assert set(np.unique(t["label"])) == {0, 1, 2}
    assert np.all(np.isfinite(f1)) and np.all(s1 > 0)
    star, q = t["label"] == 1, t["label"] == 2
    # stars: |v| <= 300 km/s, no lines; quasars in the grid's redshift range with lines
    assert np.all(np.abs(t["z"][star]) <= 300 / 299792.458) and np.all(t["snr_line"][star] == 0)
    assert np.all((t["z"][q] >= 0.1) & (t["z"][q] <= 7.0)) and np.all(t["snr_line"][q] > 0)
    assert np.all((t["mag"][star | q] >= 16) & (t["mag"][star | q] <= 22))
    # brighter stars have a higher continuum S/N (same noise model)
    assert np.corrcoef(t["mag"][star], np.log(t["snr_cont"][star]))[0, 1] < -0.8


def test_class_fractions_and_truncation():
    cfg = SpectraConfig(fractions=[0, 1, 0], truncate_fraction=1.0)
    f, s, p = simulate_batch(cfg, np.random.default_rng(0), 200)
    assert np.all(p[:, TRUTH_COLUMNS.index("label")] == 1)
    lost = np.isinf(s)
    assert lost.any(axis=1).mean() > 0.9 and lost.mean(axis=1).max() <= 0.41
    assert np.all(f[lost] == 0)


def test_star_library_is_real_and_covers_types():
    lib = load_stars()
    kinds = {n[0] for n in lib.names}
    assert {"M", "L", "T"} <= kinds and {b[0] for b in BASEL} <= set(lib.names)
    assert len(lib.names) > 150


def test_qso_composite_lies_in_the_desi_eigenspace(shared_data):
    """The noise-free composite is nearly a combination of the DESI QSO eigenspectra; a star is not."""
    from astropy.io import fits

    with fits.open(shared_data / "redrock" / "rrtemplate-QSO-LOZ-v1.1.fits") as h:
        basis = np.asarray(h[0].data, dtype=np.float64)
        hdr = h[0].header
    wave = 10 ** (hdr["CRVAL1"] + hdr["CDELT1"] * np.arange(basis.shape[1]))
    sel = (wave > 1400) & (wave < 7000)
    w, basis = wave[sel], basis[:, sel]
    cont, lines = qso.qso_rest_model(w[None, :], np.random.default_rng(0), 1, 1e-4)
    sun = np.interp(np.log(w), load_stars().loglam, load_stars().flux[load_stars().names.index("G2V-sun")])

    def explained(f):
        coef, *_ = np.linalg.lstsq(basis.T, f, rcond=None)
        return 1 - np.sum((f - basis.T @ coef) ** 2) / np.sum((f - f.mean()) ** 2)

    assert explained((cont + lines)[0]) > 0.97
    assert explained(sun) < explained((cont + lines)[0]) - 0.05


def test_cli_simulate_writes_shards_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["spectra", "simulate", "--n", "50", "--out", str(out), "--shard-size", "30", "--no-progress"]) == 0
    with h5py.File(out / "shard-00001.h5", "r") as f:
        assert f["flux"].shape == (20, 512)
        assert json.loads(f["params"].attrs["names"]) == TRUTH_COLUMNS
        assert json.loads(f.attrs["classes"]) == list(CLASSES)
    capsys.readouterr()
    before = (out / "shard-00000.h5").read_bytes()
    assert main(["spectra", "simulate", "--n", "50", "--out", str(out), "--seed", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different simulation" in err[0]
    assert (out / "shard-00000.h5").read_bytes() == before
    assert main(["spectra", "simulate", "--n", "5", "--out", str(tmp_path / "x"), "--fractions", "0", "0", "0"]) == 2
    assert "--fractions" in capsys.readouterr().err and not (tmp_path / "x").exists()
