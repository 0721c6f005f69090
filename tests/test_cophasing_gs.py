"""Gerchberg-Saxton estimator of the petal modes: recovery, diversity vs twin, wrapping, closed loop from the CLI."""

import numpy as np
import pytest
import torch

from astrolearn.cli import main
from astrolearn.cophasing.gs import GsEstimator
from astrolearn.cophasing.optics import Optics, observable, twin_modes
from astrolearn.cophasing.simulate import draw_modes


def _images(optics, modes, photons=1e5):
    """Noiseless images [e-] rendered in double precision."""
    return optics.psf(torch.as_tensor(modes, dtype=torch.float64)).numpy() * photons


def _small(n, seed, piston=50.0, tiptilt=50.0):
    return draw_modes({"piston_nm": piston, "tiptilt_nm": tiptilt}, n, np.random.default_rng(seed))


@pytest.mark.parametrize("spec", [{"wavelengths_nm": [650.0]},
                                  {"wavelengths_nm": [600.0, 650.0, 700.0]},
                                  {"wavelengths_nm": [650.0], "oversample": 2}],  # detector pixels of 2 x 2 points
                         ids=["650nm", "broadband", "binned"])
def test_gs_recovers_small_petal_errors_from_noiseless_images(spec):
    optics = Optics(**spec)
    modes = _small(6, 0)
    estimate = GsEstimator(optics).estimate(_images(optics, modes))
    assert np.abs(estimate - observable(modes)).max() < 0.1  # nm, for errors of up to 50 nm
    assert optics.wfe_nm(modes).min() > 20


def test_diversity_resolves_the_twin_that_one_in_focus_image_cannot():
    modes = np.zeros((1, 12))
    modes[0, [0, 2]] = 50.0  # pistons on two opposite petals: an even wavefront, its twin is -phi
    modes[0, 5] = 20.0
    pair = np.concatenate([modes, twin_modes(modes)])
    truth = observable(pair)
    assert Optics().wfe_nm(truth[:1] - truth[1:])[0] > 40

    with_diversity = Optics(wavelengths_nm=[650.0])
    estimate = GsEstimator(with_diversity).estimate(_images(with_diversity, pair))
    assert np.abs(estimate - truth).max() < 0.1

    in_focus = Optics(wavelengths_nm=[650.0], diversity_nm=0.0)
    image = _images(in_focus, modes)
    assert np.abs(_images(in_focus, pair[1:]) - image).max() < 1e-9 * image.max()  # the same image...
    one = GsEstimator(in_focus).estimate(image)  # ... so one answer, wrong for one of the two
    assert in_focus.wfe_nm(one - truth).max() > 40


def test_monochromatic_piston_beyond_half_a_wavelength_comes_back_wrapped():
    optics = Optics(wavelengths_nm=[650.0])
    modes = np.zeros((1, 12))
    modes[0, 0] = 400.0  # > lambda/2: the image is that of 400 - 650 = -250 nm
    estimate = GsEstimator(optics).estimate(_images(optics, modes))
    wrapped = modes.copy()
    wrapped[0, 0] -= 650.0
    assert np.abs(estimate - observable(wrapped)).max() < 0.5
    assert optics.wfe_nm(estimate - observable(modes))[0] > 100


def test_loop_with_gs_from_the_cli_reduces_the_wavefront_error(tmp_path, capsys):
    out = tmp_path / "loop"
    assert main(["cophase", "loop", "--n", "3", "--iterations", "2", "--seed", "4", "--estimator", "gs",
                 "--piston", "100", "--tiptilt", "50", "--gs-iterations", "100", "--out", str(out)]) == 0
    header, *rows = (out / "loop.csv").read_text().splitlines()
    assert header == "case,iteration,wfe_nm,strehl"
    wfe = np.array([float(r.split(",")[2]) for r in rows]).reshape(3, 3)
    assert (wfe[:, 0] > 30).all() and (wfe[:, 1] < wfe[:, 0] / 10).all() and (wfe[:, 2] < 5).all()
    config = (out / "config.yaml").read_text()
    assert "estimator: gs" in config and "gs_iterations: 100" in config and "starts:" not in config
    assert (out / "loop.png").stat().st_size > 1000


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_loop_refuses_bad_gs_iterations_in_one_line(tmp_path, capsys, value):
    out = tmp_path / "loop"
    with pytest.raises(SystemExit) as exc:  # checked by argparse: usage, then one error line
        main(["cophase", "loop", "--n", "2", "--estimator", "gs", "--gs-iterations", value, "--out", str(out)])
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--gs-iterations" in last and value in last
    assert not out.exists()


def test_fit_with_gs_reads_a_fits_cube_and_writes_the_modes_with_cramer_rao_errors(tmp_path, capsys):
    from astropy.io import fits

    from astrolearn.cophasing.learn import CophaseEstimator, locate_model

    optics = Optics.from_dict(CophaseEstimator.read_meta(locate_model())["optics"])  # the shipped sensor
    modes = _small(2, 5, 80.0, 40.0)
    cube = tmp_path / "pairs.fits"
    fits.writeto(cube, _images(optics, modes))
    out = tmp_path / "gs.csv"
    assert main(["cophase", "fit", str(cube), "--estimator", "gs", "--out", str(out)]) == 0
    header, *rows = out.read_text().splitlines()
    names = header.split(",")
    assert names[-1] == "wfe_nm" and "chi2_per_pixel" not in names
    values = np.array([[float(v) for v in r.split(",")] for r in rows])
    estimate = values[:, [names.index(n) for n in optics.names]]
    errors = values[:, [names.index(f"{n}_err") for n in optics.names]]
    assert np.abs(estimate - observable(modes)).max() < 0.1
    assert (errors > 0).all() and (errors < 1).all()  # the bound at 1e5 e- per image: a fraction of a nm
    assert "estimator: gs" in (tmp_path / "gs.config.yaml").read_text()

    bad = tmp_path / "bad.fits"
    fits.writeto(bad, np.ones((1, 16, 16)))
    assert main(["cophase", "fit", str(bad), "--estimator", "gs", "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("astrolearn: error:") and "shape" in err and "\n" not in err
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.config.yaml").exists()
