"""``astrolearn cophase``: simulate -> train -> predict/fit/evaluate/loop, resume, refusals."""

import json

import h5py
import numpy as np
import pytest
from astropy.io import fits

from astrolearn.cli import main
from astrolearn.cophasing.optics import mode_names


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cophase")
    sim, run = root / "sim", root / "run"
    assert main(["cophase", "simulate", "--n", "24", "--seed", "3", "--out", str(sim), "--shard-size", "12",
                 "--photons", "1e5", "--no-progress"]) == 0
    assert main(["cophase", "train", str(sim), "--out", str(run), "--max-epochs", "1", "--accelerator", "cpu",
                 "--set", "data.batch_size=8", "--set", "data.val_fraction=0.25"]) == 0
    return root, sim, run


def test_simulate_writes_pairs_of_images_with_their_truth_and_resumes(trained, capsys):
    root, sim, _ = trained
    with h5py.File(sim / "shard-00000.h5") as f:
        assert f["images"].shape == (12, 2, 32, 32)
        assert json.loads(f["params"].attrs["names"]) == [*mode_names(), "photons"]
        flux = f["images"][...].sum(axis=(-2, -1))
        share = flux / 1e5
        assert ((share > 0.85) & (share < 1.0)).all()  # some light falls outside the 32 px field
        assert np.abs(f["params"][:, :4]).max() <= 300
    before = (sim / "shard-00001.h5").stat().st_mtime_ns
    assert main(["cophase", "simulate", "--n", "24", "--seed", "3", "--out", str(sim), "--shard-size", "12",
                 "--photons", "1e5", "--no-progress"]) == 0
    assert (sim / "shard-00001.h5").stat().st_mtime_ns == before  # same settings: kept
    capsys.readouterr()
    assert main(["cophase", "simulate", "--n", "24", "--seed", "4", "--out", str(sim), "--shard-size", "12",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("astrolearn: error:") and "--overwrite" in err and "\n" not in err


def _fits_cube(sim, tmp_path, n):
    """The first ``n`` image pairs of the simulated shard as a FITS cube, as a user would bring them."""
    with h5py.File(sim / "shard-00000.h5") as f:
        images = f["images"][:n]
    path = tmp_path / "pair.fits"
    fits.writeto(path, images)
    return path


def test_predict_reads_a_fits_cube_and_writes_twelve_modes_with_errors(trained, tmp_path):
    root, sim, run = trained
    cube = _fits_cube(sim, tmp_path, 3)
    out = tmp_path / "modes.csv"
    assert main(["cophase", "predict", str(cube), "--model", str(run), "--out", str(out)]) == 0
    header, *rows = out.read_text().splitlines()
    assert header.split(",")[:3] == ["index", "piston_1", "piston_1_err"] and "tilt_4_err" in header
    assert len(rows) == 3
    values = np.array([[float(v) for v in r.split(",")] for r in rows])
    assert np.isfinite(values).all() and (values[:, 2] > 0).all()
    assert np.abs(values[:, [1, 3, 5, 7]].sum(1)).max() < 1e-3  # pistons without their common part
    assert (tmp_path / "modes.config.yaml").is_file()


def test_predict_refuses_bad_input_in_one_line_and_leaves_nothing(trained, tmp_path, capsys):
    root, sim, run = trained
    bad = tmp_path / "bad.fits"
    fits.writeto(bad, np.ones((3, 16, 16)))
    nan = tmp_path / "nan.fits"
    fits.writeto(nan, np.full((2, 32, 32), np.nan))
    for source, words in ((bad, "shape"), (nan, "NaN"), (tmp_path / "missing.fits", "no such file")):
        out = tmp_path / "x.csv"
        assert main(["cophase", "predict", str(source), "--model", str(run), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("astrolearn: error:") and words in err and "\n" not in err
        assert not out.exists() and not (tmp_path / "x.config.yaml").exists()
    existing = tmp_path / "exists.csv"
    existing.write_text("keep")
    assert main(["cophase", "predict", str(sim / "shard-00000.h5"), "--model", str(run), "--out", str(existing)]) == 2
    assert "--overwrite" in capsys.readouterr().err and existing.read_text() == "keep"


def test_fit_and_evaluate_run_on_a_shard(trained, tmp_path):
    root, sim, run = trained
    pair = _fits_cube(sim, tmp_path, 2)
    out = tmp_path / "fit.csv"
    assert main(["cophase", "fit", str(pair), "--model", str(run), "--out", str(out),
                 "--starts", "1", "--max-iter", "3", "--no-progress"]) == 0
    header, *rows = out.read_text().splitlines()
    assert len(rows) == 2 and header.endswith("wfe_nm,chi2_per_pixel")
    assert all(float(v) > 0 for v in rows[0].split(",")[2:24:2])  # the Cramer-Rao errors
    report = tmp_path / "ev"
    assert main(["cophase", "evaluate", "--model", str(run), "--data", str(sim), "--out", str(report),
                 "--n-fit", "2", "--starts", "1", "--max-iter", "3", "--no-progress"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["cnn"]["n"] == 24 and metrics["lsq"]["n"] == 2
    assert metrics["cnn"]["wfe_median_nm"] > 0


@pytest.mark.parametrize("estimator", ["cnn", "lsq"])
def test_loop_writes_one_row_per_case_and_iteration_and_a_plot(trained, tmp_path, estimator):
    root, sim, run = trained
    out = tmp_path / "loop"
    assert main(["cophase", "loop", "--n", "3", "--iterations", "2", "--seed", "1", "--out", str(out),
                 "--estimator", estimator, "--model", str(run), "--starts", "1", "--max-iter", "3"]) == 0
    header, *rows = (out / "loop.csv").read_text().splitlines()
    assert header == "case,iteration,wfe_nm,strehl"
    table = np.array([[float(v) for v in r.split(",")] for r in rows])
    assert table.shape == (9, 4)
    assert list(table[:3, 1]) == [0, 1, 2]
    assert ((table[:, 3] > 0) & (table[:, 3] <= 1)).all()
    assert (table[table[:, 1] == 0, 2] > 50).all()  # U(+-300 nm) pistons: far from cophased
    assert (out / "loop.png").stat().st_size > 1000


def test_loop_refuses_to_overwrite_and_bad_values(trained, tmp_path, capsys):
    root, sim, run = trained
    out = tmp_path / "loop"
    out.mkdir()
    (out / "loop.csv").write_text("keep")
    assert main(["cophase", "loop", "--n", "2", "--out", str(out), "--model", str(run)]) == 2
    assert (out / "loop.csv").read_text() == "keep" and not (out / "loop.png").exists()
    capsys.readouterr()
    assert main(["cophase", "loop", "--n", "2", "--out", str(tmp_path / "l2"), "--photons", "-5",
                 "--model", str(run)]) == 2
    assert "--photons" in capsys.readouterr().err and not (tmp_path / "l2").exists()
