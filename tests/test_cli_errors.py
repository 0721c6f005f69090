"""Bad input on the command line: refused with one line (exit 2) and nothing written, or handled and said."""

import logging

import numpy as np
import pytest
from astropy.io import fits

from astrolearn.cli import main
from astrolearn.io.tables import read_csv
from astrolearn.psf.data import load_psf_images, min_frame_side
from astrolearn.psf.instruments import load_instrument

from psf_helpers import circular

KECK = ("keck", "20130801_n0004.fits")
#: r0(500 nm) [m] of ``psf fit --static none`` on the clean frame (test_psf_fit.py fits it too).
CLEAN_FIT_R0 = 0.1702


def refused(capsys, argv, *expected):
    """Run the CLI: exit status 2, one stderr line ``astrolearn: error: ...`` holding ``expected``."""
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("astrolearn: error: ")
    for text in expected:
        assert text in lines[0]
    return lines[0]


def usage_error(capsys, argv, option):
    """argparse refuses a value: exit 2, its usage line, then ``error: argument OPTION: ...``."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("usage: ")
    assert f"error: argument {option}: " in err[-1]


def gaussian_frame(n=128, fwhm=4.0, flux=1e6, header=None, path=None):
    yy, xx = np.mgrid[:n, :n] - n // 2
    frame = flux * np.exp(-4 * np.log(2) * (xx**2 + yy**2) / fwhm**2) / (np.pi / (4 * np.log(2)) * fwhm**2) + 10.0
    if path is not None:
        fits.writeto(path, frame.astype(np.float32), header=fits.Header(header or {}))
    return frame


def listing(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# ---- 1. bad input that used to get an answer ----------------------------------------------

@pytest.mark.parametrize("verb", ["fit", "predict"])
def test_frame_too_small_is_refused(tmp_path, capsys, verb):
    path = tmp_path / "tiny.fits"
    fits.writeto(path, np.ones((2, 3), np.float32))
    side = min_frame_side(load_instrument("nirc2"))
    assert side == 66  # 2 x (21 - 1) / 2 lambda/D at 3.25 px per lambda/D, rounded up
    refused(capsys, ["psf", verb, str(path), "--instrument", "nirc2", "--out", str(tmp_path / "out.csv")],
            "2x3 pixels", f"nirc2 needs at least {side}x{side}")
    assert listing(tmp_path) == ["tiny.fits"]


def test_min_frame_side_is_bounded_by_the_model_frame():
    # IRDIS: the control radius (88 px) lies beyond the 128-px model frame.
    assert min_frame_side(load_instrument("irdis")) == 128


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_pixels_are_masked_and_counted(tmp_path, bad):
    inst = circular(npix=64)
    frame = gaussian_frame(96)
    frame[5, 90] = bad  # far from the star: must not move the cut
    path = tmp_path / "frame.fits"
    fits.writeto(path, frame.astype(np.float32))
    data = load_psf_images(path, inst)
    assert data.offsets.tolist() == [[48 - 32, 48 - 32]]
    assert data.n_masked.tolist() == [0]  # (5, 90) lies outside the 64 x 64 cut around (48, 48)
    frame[40, 50] = bad  # inside the cut
    fits.writeto(path, frame.astype(np.float32), overwrite=True)
    data = load_psf_images(path, inst)
    assert data.offsets.tolist() == [[16, 16]]
    assert data.n_masked.tolist() == [1]
    assert data.weights[0, 40 - 16, 50 - 16] == 0 and np.isfinite(data.images).all()


def test_masked_core_is_refused(tmp_path, capsys):
    inst = circular(npix=64)
    frame = gaussian_frame(64)
    frame[28:37, 28:37] = np.inf  # saturated core
    path = tmp_path / "sat.fits"
    fits.writeto(path, frame.astype(np.float32))
    from astrolearn.errors import UserError

    with pytest.raises(UserError, match="frame 0 has .* of its core"):
        load_psf_images(path, inst)


@pytest.mark.filterwarnings("ignore:Header block contains null bytes")
def test_real_keck_frame_with_an_inf_pixel(shared_data, tmp_path, capsys):
    """One +inf pixel in the real NIRC2 frame changes neither the centre nor r0 (fit and CNN)."""
    from astrolearn.psf.fit import PsfFitter

    clean_path = shared_data.joinpath(*KECK)
    with fits.open(clean_path, ignore_missing_simple=True) as hdul:
        frame, header = hdul[0].data.astype(np.float32), hdul[0].header
    frame[20, 130] = np.inf  # in the 128 x 128 cut around the star at (74, 74)
    inf_path = tmp_path / "inf.fits"
    fits.writeto(inf_path, frame, header, output_verify="silentfix")

    inst = load_instrument("nirc2")
    clean, dirty = load_psf_images(clean_path, inst), load_psf_images(inf_path, inst)
    assert dirty.n_masked.tolist() == [1] and clean.n_masked.tolist() == [0]
    assert (dirty.offsets == clean.offsets).all()
    result = PsfFitter(inst, fit_static=False).fit(dirty.images, dirty.weights)
    assert result.values[0, 0] == pytest.approx(CLEAN_FIT_R0, rel=0.02)

    for name, path in (("clean", clean_path), ("inf", inf_path)):
        assert main(["psf", "predict", str(path), "--instrument", "nirc2", "--out", str(tmp_path / f"{name}.csv"),
                     "--no-progress"]) == 0
    clean_t, dirty_t = read_csv(tmp_path / "clean.csv"), read_csv(tmp_path / "inf.csv")
    assert dirty_t["r0"][0] == pytest.approx(clean_t["r0"][0], rel=0.02)
    assert dirty_t["x"][0] == pytest.approx(clean_t["x"][0], abs=0.1)
    assert dirty_t["n_masked"].tolist() == [1]


def test_header_contradicting_the_instrument(shared_data, tmp_path, capsys):
    frame = str(shared_data.joinpath(*KECK))
    out = tmp_path / "p.csv"
    refused(capsys, ["psf", "predict", frame, "--instrument", "irdis", "--out", str(out)],
            "TELESCOP = 'KECK II'", "irdis expects 'ESO-VLT-U3'", "--force")
    assert not out.exists()
    assert main(["psf", "predict", frame, "--instrument", "irdis", "--out", str(out), "--force"]) == 0
    assert "astrolearn: warning:" in capsys.readouterr().err and out.exists()


def test_header_wavelength_and_camera(tmp_path, capsys):
    out = tmp_path / "f.csv"
    wide = tmp_path / "wide.fits"
    gaussian_frame(header={"TELESCOP": "KECK II", "CAMNAME": "WIDE"}, path=wide)
    refused(capsys, ["psf", "fit", str(wide), "--instrument", "nirc2", "--out", str(out)],
            "CAMNAME = 'WIDE'", "'NARROW'")
    kband = tmp_path / "k.fits"
    gaussian_frame(header={"TELESCOP": "keck ii ", "EFFWAVE": 2.2}, path=kband)
    refused(capsys, ["psf", "fit", str(kband), "--instrument", "nirc2", "--out", str(out)],
            "EFFWAVE = 2.2 um", "1.6455 um", "--wavelength")
    assert not out.exists()
    # The same wavelength within the tolerance passes the check (and fails later on the model).
    inst = load_instrument("nirc2", wavelength_um=2.18)
    assert load_psf_images(kband, inst).images.shape == (1, 128, 128)


# ---- counts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, option", [
    (["demo", "--n-fit", "-3"], "--n-fit"),
    (["demo", "--n-fit", "0"], "--n-fit"),
    (["demo", "--n-spectra", "-3"], "--n-spectra"),
    (["demo", "--n", "x"], "--n"),
    (["psf", "evaluate", "--model", "m", "--data", "d", "--out", "o", "--n-fit", "-5"], "--n-fit"),
    (["psf", "evaluate", "--model", "m", "--data", "d", "--out", "o", "--n-fit", "0"], "--n-fit"),
    (["psf", "simulate", "--instrument", "nirc2", "--n", "4", "--out", "o", "--shard-size", "0"], "--shard-size"),
    (["psf", "simulate", "--instrument", "nirc2", "--n", "4", "--out", "o", "--workers", "0"], "--workers"),
    (["psf", "simulate", "--instrument", "nirc2", "--n", "4", "--out", "o", "--seed", "-1"], "--seed"),
    (["psf", "fit", "f.fits", "--instrument", "nirc2", "--out", "o.csv", "--batch", "0"], "--batch"),
    (["psf", "fit", "f.fits", "--instrument", "nirc2", "--out", "o.csv", "--max-iter", "0"], "--max-iter"),
    (["psf", "train", "d", "--out", "o", "--max-epochs", "0"], "--max-epochs"),
    (["redshift", "simulate", "--n", "0", "--out", "o"], "--n"),
    (["redshift", "estimate", "s", "--out", "o", "--workers", "0"], "--workers"),
    (["redshift", "estimate", "s", "--out", "o", "--candidates", "0"], "--candidates"),
    (["redshift", "estimate", "s", "--out", "o", "--chunk-size", "0"], "--chunk-size"),
    (["redshift", "train", "d", "--out", "o", "--pool", "0"], "--pool"),
])
def test_counts_must_be_positive(capsys, tmp_path, monkeypatch, argv, option):
    monkeypatch.chdir(tmp_path)
    usage_error(capsys, argv, option)
    assert listing(tmp_path) == []


def test_stride_must_be_positive(capsys, tmp_path):
    refused(capsys, ["redshift", "estimate", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--stride", "0"],
            "--stride")


def test_demo_n_fit_above_n(capsys, tmp_path):
    refused(capsys, ["demo", "--n", "10", "--n-fit", "50", "--out", str(tmp_path / "d")], "--n-fit 50", "10 PSFs")
    assert listing(tmp_path) == []


# ---- 2. outputs ---------------------------------------------------------------------------------

def test_simulate_out_is_an_existing_file(capsys, tmp_path):
    out = tmp_path / "taken.h5"
    out.write_text("mine")
    refused(capsys, ["psf", "simulate", "--instrument", "nirc2", "--n", "2", "--out", str(out)], "not a directory")
    assert out.read_text() == "mine" and listing(tmp_path) == ["taken.h5"]


@pytest.mark.parametrize("verb", ["fit", "predict"])
def test_out_is_an_existing_directory(capsys, tmp_path, verb):
    frame = tmp_path / "f.fits"
    gaussian_frame(path=frame)
    (tmp_path / "out" / "inside").mkdir(parents=True)
    refused(capsys, ["psf", verb, str(frame), "--instrument", "nirc2", "--out", str(tmp_path / "out"),
                     "--overwrite"], "is a directory")
    assert listing(tmp_path) == ["f.fits", "out", "out/inside"]


# ---- 2. --set and refused training starts -----------------------------------------------

@pytest.fixture(scope="module")
def psf_shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "sim"
    assert main(["psf", "simulate", "--instrument", "nirc2", "--n", "8", "--static", "none", "--out", str(out),
                 "--no-progress"]) == 0
    return out


def test_set_value_of_the_wrong_type(capsys, tmp_path, psf_shards):
    run = tmp_path / "run"
    refused(capsys, ["psf", "train", str(psf_shards), "--out", str(run), "--set", "optimizer.lr=abc"],
            "'optimizer.lr'", "expected a number, got 'abc'")
    refused(capsys, ["psf", "train", str(psf_shards), "--out", str(run), "--set", "trainer.max_epochs=1.5"],
            "'trainer.max_epochs'", "expected an integer")
    refused(capsys, ["psf", "train", str(psf_shards), "--out", str(run), "--set", "optimizer.betas=0.9"],
            "expected a list")
    assert not run.exists()
    # redshift train: checked before the estimates are copied into the run directory.
    refused(capsys, ["redshift", "train", str(tmp_path / "estimates"), "--out", str(run), "--set",
                     "optimizer.lr=abc"], "'optimizer.lr'")
    assert not run.exists()


def test_a_start_that_fails_leaves_the_run_directory_as_it_was(capsys, caplog, tmp_path, psf_shards):
    """A failure inside the trainer (an invalid learning rate) before the first epoch undoes the start."""
    caplog.set_level(logging.WARNING, logger="lightning.pytorch")  # its "GPU available" lines on stderr
    run = tmp_path / "run"
    train = ["psf", "train", str(psf_shards), "--out", str(run), "--max-epochs", "1", "--set", "optimizer.lr=-1"]
    refused(capsys, train, "Invalid learning rate")
    assert not run.exists()
    # A previous run (stand-in files) survives a failed --overwrite and a failed --resume.
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_text("previous weights")
    (run / "config.yaml").write_text("model: previous\n")
    (run / "notes.txt").write_text("mine")
    before = {p: p.read_text() for p in run.rglob("*") if p.is_file()}
    for extra in (["--overwrite"], ["--resume"]):
        assert main(train + extra) == 2
        capsys.readouterr()
        assert {p: p.read_text() for p in run.rglob("*") if p.is_file()} == before
        assert listing(run) == ["checkpoints", "checkpoints/last.ckpt", "config.yaml", "notes.txt"]


# ---- sweep: files that are not what they should be ----------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["psf", "fit", "{tmp}/missing.fits", "--instrument", "nirc2", "--out", "{tmp}/o.csv"], "no such file"),
    (["psf", "fit", "{tmp}/dir", "--instrument", "nirc2", "--out", "{tmp}/o.csv"], "not a readable FITS"),
    (["psf", "fit", "{tmp}/bad.fits", "--instrument", "nirc2", "--out", "{tmp}/o.csv"], "not a readable FITS"),
    (["psf", "predict", "{tmp}/bad.h5", "--instrument", "nirc2", "--out", "{tmp}/o.csv"], "not a readable HDF5"),
    (["psf", "train", "{tmp}/dir", "--out", "{tmp}/run"], "no shard-*.h5"),
    (["psf", "evaluate", "--model", "{tmp}/dir", "--data", "{tmp}/dir", "--out", "{tmp}/e"], "neither a PSF model directory"),
    (["psf", "simulate", "--instrument", "nirc2", "--n", "2", "--out", "{tmp}/sim", "--static-basis",
      "{tmp}/bad.fits"], "not a readable FITS"),
    (["redshift", "estimate", "{tmp}/dir", "--out", "{tmp}/z"], "no shard-*.h5"),
    (["redshift", "estimate", "{tmp}/bad.h5", "--out", "{tmp}/z"], "not a readable HDF5"),
])
def test_unusable_files(capsys, tmp_path, argv, expected):
    (tmp_path / "dir").mkdir()
    (tmp_path / "bad.fits").write_text("not FITS")
    (tmp_path / "bad.h5").write_text("not HDF5")
    refused(capsys, [a.format(tmp=tmp_path) for a in argv], expected)
    assert listing(tmp_path) == ["bad.fits", "bad.h5", "dir"]
