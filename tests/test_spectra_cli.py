"""``astrolearn spectra train|predict|evaluate``: formats, order, refusals, real spectra."""

import csv

import numpy as np
import pytest

from astrolearn.cli import main
from astrolearn.spectra.classifier import MIN_COVERAGE, network_input, to_grid


def run(*args):
    return main(["spectra", *[str(a) for a in args]])


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny NISP run (1 epoch on 300 spectra): the pipeline, not the accuracy."""
    d = tmp_path_factory.mktemp("spectra")
    assert run("simulate", "--n", "300", "--out", d / "train", "--shard-size", "150", "--no-progress") == 0
    assert run("train", d / "train", "--out", d / "run", "--max-epochs", "1", "--set", "data.batch_size=64",
               "--set", "trainer.accelerator=cpu", "--set", "trainer.devices=1") == 0
    return d


def test_train_writes_calibrated_model_and_rf(trained):
    import json

    meta = json.loads((trained / "run" / "spectra_model.json").read_text())
    assert meta["classes"] == ["GALAXY", "STAR", "QSO"] and meta["grid"]["npix"] == 512
    assert meta["calibration"]["scale"] > 0
    assert meta["training"]["val_nll_calibrated"] <= meta["training"]["val_nll_raw"] + 1e-9
    seed = json.loads((trained / "train" / "simulation.json").read_text())["seed"]
    assert meta["training"]["data"] == [{"directory": str(trained / "train"), "shards": 2, "seed": seed}]
    assert (trained / "run" / "baseline_rf.pkl").is_file() and (trained / "run" / "config.yaml").is_file()


def test_export_ships_the_kept_epoch(trained, tmp_path):
    from astrolearn.spectra.classifier import SpectraClassifier, export_model

    shipped = export_model(trained / "run", tmp_path / "model")
    assert [p.name for p in (shipped / "checkpoints").iterdir()] == ["best-epoch=000.ckpt"]
    clf = SpectraClassifier(shipped)
    assert (clf.meta["training"]["epochs_trained"], clf.meta["training"]["epoch_kept"]) == (1, 0)
    x = np.zeros((1, 2, 512), dtype=np.float32)
    np.testing.assert_array_equal(clf.logits(x), SpectraClassifier(trained / "run").logits(x))


def test_predict_text_and_fits_in_input_order(trained, tmp_path, capsys):
    from astropy.io import fits

    from astrolearn.redshift.io import read_shard_spectra

    sp = read_shard_spectra(trained / "train" / "shard-00000.h5", 0, 5)
    sig = 1 / np.sqrt(sp.ivar[2])
    np.savetxt(tmp_path / "one.txt", np.column_stack([sp.wave, sp.flux[2], sig]))
    assert run("predict", tmp_path / "one.txt", "--out", tmp_path / "a", "--model", trained / "run") == 0
    (r,) = rows(tmp_path / "a" / "classes.csv")
    assert list(r) == ["targetid", "class", "p_galaxy", "p_star", "p_qso"]
    p = np.array([float(r[k]) for k in ("p_galaxy", "p_star", "p_qso")])
    assert p.sum() == pytest.approx(1, abs=1e-5) and r["class"] == ["GALAXY", "STAR", "QSO"][p.argmax()]
    # a FITS batch (flux in 1e-17 units) keeps the order and gives the same probabilities as the shard
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sp.wave, name="WAVELENGTH"),
                  fits.ImageHDU(sp.flux / 1e-17, name="FLUX"), fits.ImageHDU(sp.ivar * 1e-34, name="IVAR"),
                  fits.BinTableHDU.from_columns([fits.Column("TARGETID", "K", array=[9, 7, 5, 3, 1])], name="FIBERMAP")]
                 ).writeto(tmp_path / "batch.fits")
    assert run("predict", tmp_path / "batch.fits", "--out", tmp_path / "b", "--model", trained / "run") == 0
    assert run("predict", trained / "train" / "shard-00000.h5", "--out", tmp_path / "c", "--model", trained / "run") == 0
    got, ref = rows(tmp_path / "b" / "classes.csv"), rows(tmp_path / "c" / "classes.csv")[:5]
    assert [g["targetid"] for g in got] == ["9", "7", "5", "3", "1"]
    for g, e in zip(got, ref):
        assert float(g["p_qso"]) == pytest.approx(float(e["p_qso"]), abs=1e-4)
    capsys.readouterr()
    assert run("predict", tmp_path / "one.txt", "--out", tmp_path / "a", "--model", trained / "run") == 2
    assert "--overwrite" in capsys.readouterr().err


def test_out_of_range_spectrum_is_refused_in_one_line(trained, tmp_path, capsys):
    wave = np.linspace(3600, 9800, 2000)
    np.savetxt(tmp_path / "optical.txt", np.column_stack([wave, np.ones_like(wave), np.ones_like(wave) * 0.1]))
    assert run("predict", tmp_path / "optical.txt", "--out", tmp_path / "o", "--model", trained / "run") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "outside the nisp model's range" in err[0] and "3600-9800 A" in err[0]
    assert not (tmp_path / "o").exists()
    assert run("predict", tmp_path / "optical.txt", "--out", tmp_path / "o", "--model", tmp_path / "nothing") == 2
    assert "neither a spectra model directory (with spectra_model.json) nor a shipped model (nisp, optical)" in capsys.readouterr().err


def test_evaluate_writes_reports_that_match_the_predictions(trained, tmp_path):
    assert run("evaluate", trained / "train", "--out", tmp_path / "ev", "--model", trained / "run") == 0
    pred = rows(tmp_path / "ev" / "classes.csv")
    conf = rows(tmp_path / "ev" / "confusion.csv")
    assert sum(int(r[f"pred_{c}"]) for r in conf for c in ("GALAXY", "STAR", "QSO")) == len(pred) == 300
    n_star_pred = sum(r["class"] == "STAR" for r in pred)
    assert sum(int(r["pred_STAR"]) for r in conf) == n_star_pred
    assert (tmp_path / "ev" / "purity_completeness.png").stat().st_size > 1000


def test_to_grid_bins_with_inverse_variance_weights_and_checks_coverage():
    grid = {"name": "toy", "wmin": 100.0, "dw": 10.0, "npix": 10}
    wave = 96.0 + 2.0 * np.arange(50)  # 5 input pixels per model pixel
    flux = np.arange(50.0)[None, :]
    ivar = np.ones((1, 50))
    ivar[0, 0] = 3.0
    f, w = to_grid(wave, flux, ivar, grid)
    assert w[0, 0] == 7 and f[0, 0] == pytest.approx((0 * 3 + 1 + 2 + 3 + 4) / 7)
    assert f[0, 1] == pytest.approx(7.0)
    with pytest.raises(Exception, match="outside the toy model's range"):
        to_grid(wave[:20], flux[:, :20], ivar[:, :20], grid)
    assert MIN_COVERAGE == 0.5


def test_network_input_ignores_flux_units_and_bad_pixels():
    rng = np.random.default_rng(0)
    flux, ivar = rng.normal(5, 1, (2, 100)), np.full((2, 100), 4.0)
    ivar[:, 10] = 0
    x1 = network_input(flux, ivar)
    x2 = network_input(flux * 1e-17, ivar * 1e34)
    assert x1.shape == (2, 2, 100) and np.allclose(x1, x2, atol=1e-5)
    assert np.all(x1[:, :, 10] == 0)


def test_network_input_and_logits_do_not_depend_on_their_blocks():
    """Normalising and classifying in blocks (the speed settings) gives the whole-batch answer."""
    from astrolearn.spectra.classifier import SpectraClassifier

    rng = np.random.default_rng(1)
    flux, ivar = rng.normal(3, 1, (300, 512)), rng.uniform(0, 5, (300, 512))
    ivar[::7, ::3] = 0
    flux[5, 40] = np.nan
    whole = network_input(flux, ivar, block=len(flux))
    np.testing.assert_array_equal(network_input(flux, ivar, block=7), whole)
    np.testing.assert_array_equal(network_input(flux[0], ivar[0]), whole[0])
    clf = SpectraClassifier("nisp")
    np.testing.assert_allclose(clf.logits(whole), clf.logits(whole, batch_size=300), rtol=1e-5, atol=1e-5)


def test_shipped_models_classify_bright_simulated_spectra(tmp_path):
    """The shipped models are accurate on bright simulated spectra of their grid."""
    from astrolearn.spectra.classifier import SpectraClassifier
    from astrolearn.spectra.simulate import TRUTH_COLUMNS, SpectraConfig, simulate_batch

    for grid in ("nisp", "optical"):
        cfg = SpectraConfig(grid=grid, fractions=[0, 0.5, 0.5], mag_range=[16, 18], truncate_fraction=0)
        f, s, p = simulate_batch(cfg, np.random.default_rng(11), 200)
        clf = SpectraClassifier(grid)
        training = clf.meta["training"]  # what was trained, and which epoch ships (issue 19)
        assert training["n_train"] > 0 and 0 <= training["epoch_kept"] < training["epochs_trained"]
        assert all(d["seed"] is not None for d in training["data"]), training["data"]  # the data it was made from
        probs = clf.predict(cfg.wave, f, 1 / s.astype(np.float64) ** 2)
        assert np.mean(probs.argmax(axis=1) == p[:, TRUTH_COLUMNS.index("label")]) > 0.97, grid


def test_predict_picks_the_shipped_model_of_the_input_range(shared_data, tmp_path, capsys):
    from astrolearn.cli import main

    sdss = shared_data / "realspec" / "sdss" / "spec-0266-51602-0001.fits"
    assert main(["spectra", "predict", str(sdss), "--out", str(tmp_path / "a")]) == 0
    assert "shipped model 'optical'" in capsys.readouterr().out
    assert (tmp_path / "a" / "classes.csv").read_text().splitlines()[1].split(",")[1] == "GALAXY"
    far = tmp_path / "far.txt"
    far.write_text("20000 1 1\n20010 1 1\n20020 1 1\n")
    assert main(["spectra", "predict", str(far), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no shipped model takes it" in err and "optical" in err
    assert not (tmp_path / "b").exists()


def test_real_spectra_are_classified(shared_data, tmp_path):
    """Real SDSS and DESI files go through the optical model; an APOGEE H-band file is refused by it."""
    sdss = sorted((shared_data / "realspec" / "sdss").glob("spec-*.fits"))[0]
    assert run("predict", sdss, "--out", tmp_path / "s", "--model", "optical") == 0
    assert len(rows(tmp_path / "s" / "classes.csv")) == 1
    desi = shared_data / "desi" / "coadd-4-80613-thru20210324.fits"
    assert run("predict", desi, "--out", tmp_path / "d", "--model", "optical") == 0
    assert len(rows(tmp_path / "d" / "classes.csv")) >= 1
