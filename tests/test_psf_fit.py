import numpy as np
import pytest
import torch
from astropy.io import fits

from astrolearn.cli import main
from astrolearn.errors import UserError
from astrolearn.io.tables import read_csv
from astrolearn.psf.data import load_psf_images
from astrolearn.psf.fit import PsfFitter, status_summary
from astrolearn.psf.instruments import load_instrument
from astrolearn.psf.model import PsfaoModel
from astrolearn.psf.simulate import DEFAULT_SIM, column_names, draw_parameters, render
from psf_helpers import circular


def _noiseless(inst, n, seed, static=False):
    cfg = dict(DEFAULT_SIM, static=static, noise="none")
    params = draw_parameters(inst, cfg, n, np.random.default_rng(seed))
    names = column_names(inst, static)
    return params, names, render(PsfaoModel(inst), inst, params, names)


def test_noiseless_recovery():
    inst = circular(npix=64)
    params, names, images = _noiseless(inst, 4, 3)
    weights = np.ones_like(images) / images.max() ** 2
    result = PsfFitter(inst, fit_static=False, batch=4).fit(images, weights)
    for name in ("r0", "bck", "amp", "alpha", "beta"):
        truth = params[:, names.index(name)]
        err = np.abs(result.values[:, result.names.index(name)] - truth) / truth
        assert np.median(err) <= 1e-3, name
    assert list(result.status) == ["converged"] * 4 and result.warning() is None


def test_fit_status_names_iteration_cap_and_parameters_at_a_bound():
    inst = circular(npix=64)
    first, names, _ = _noiseless(inst, 2, 3)
    second, _, _ = _noiseless(inst, 2, 5)
    # Both PSFs have beta beyond the fit's upper bound 5.0, the second also r0 beyond 100 m at 2.2 um.
    params = np.stack([first[0], second[1]])
    params[:, names.index("beta")] = 6.0
    params[1, names.index("r0")] = 80.0
    images = render(PsfaoModel(inst), inst, params, names)
    weights = np.ones_like(images) / images.max() ** 2
    result = PsfFitter(inst, fit_static=False, batch=2, max_iter=40).fit(images, weights)
    assert list(result.status) == ["at_bound:beta", "at_bound:r0,beta"]
    assert np.all(result.values[:, result.names.index("beta")] == 5.0)
    assert result.warning() == ("2 of 2 fit(s) did not converge: 2 with a parameter at a bound of the fit "
                                "(beta 2, r0 1)")
    capped = PsfFitter(inst, fit_static=False, batch=2, max_iter=1).fit(images[:1], weights[:1])
    assert list(capped.status) == ["iteration_cap"] and list(capped.niter) == [1]
    # C = 0 ends the model's domain (a PSD level is >= 0): a fit there is converged, not at a bound.
    fitter = PsfFitter(inst, fit_static=False)
    z = torch.where(torch.isfinite(fitter.z_lo + fitter.z_hi), (fitter.z_lo + fitter.z_hi) / 2, 0.0)[None]
    z[0, fitter.names.index("bck")] = fitter.z_lo[fitter.names.index("bck")]
    assert fitter._status(z, torch.tensor([False])) == ["converged"]
    z[0, fitter.names.index("beta")] = fitter.z_hi[fitter.names.index("beta")]
    assert fitter._status(z, torch.tensor([False])) == ["at_bound:beta"]
    summary = status_summary(["converged", "iteration_cap", "at_bound:beta", "at_bound:r0,beta"])
    assert (summary["failed"], summary["iteration_cap"], summary["at_bound"]) == (3, 1, 2)
    assert summary["by_parameter"] == {"beta": 2, "r0": 1}


def test_render_reproduces_simulated_frames():
    """The model image of a parameter table (psf predict's PNG) is the simulator's frame."""
    inst = circular(npix=64)
    params, names, images = _noiseless(inst, 3, 5)
    fitter = PsfFitter(inst, fit_static=False, batch=2)
    table = {name: params[:, names.index(name)] for name in fitter.names}
    models, flux, background = fitter.render(images, np.ones_like(images), table)
    np.testing.assert_allclose(models, images, atol=1e-8 * images.max())
    np.testing.assert_allclose(flux, table["flux"], rtol=1e-8)
    np.testing.assert_allclose(background, table["background"], atol=1e-8 * images.max())


def test_nan_pixels_ignored_and_all_nan_refused(tmp_path):
    inst = circular(npix=64)
    params, names, images = _noiseless(inst, 1, 5)
    frame = images[0].copy()
    frame[10:20, 5:9] = np.nan
    path = tmp_path / "psf.fits"
    fits.writeto(path, (frame / 4.0).astype(np.float32))
    data = load_psf_images(path, inst, weighting="uniform")
    assert data.gain == 4.0 and (data.weights[0][np.isnan(np.pad(frame, 0))] == 0).all()
    result = PsfFitter(inst, fit_static=False).fit(data.images, data.weights)
    assert abs(result.values[0, 0] / params[0, 0] - 1) < 1e-3
    nan_path = tmp_path / "nan.fits"
    fits.writeto(nan_path, np.full((2, 64, 64), np.nan, dtype=np.float32))
    with pytest.raises(UserError, match="frame 0 has no finite pixel"):
        load_psf_images(nan_path, inst)
    empty_path = tmp_path / "empty.fits"
    fits.writeto(empty_path, np.stack([frame, np.zeros_like(frame)]).astype(np.float32))
    with pytest.raises(UserError, match="frame 1 has no signal"):
        load_psf_images(empty_path, inst)


def test_cli_fit_outputs(tmp_path, capsys):
    import yaml

    inst = circular(npix=64)
    inst_file = tmp_path / "circ.yaml"
    inst_file.write_text(yaml.safe_dump(inst.to_dict()))
    params, names, images = _noiseless(inst, 2, 9)
    path = tmp_path / "cube.fits"
    fits.writeto(path, (images / 4.0).astype(np.float32))
    out = tmp_path / "params.csv"
    args = ["psf", "fit", str(path), "--instrument", str(inst_file), "--out", str(out), "--static", "none",
            "--weights", "uniform", "--no-progress"]
    assert main(args) == 0
    table = read_csv(out)
    expected = ["index", "r0", "r0_err", "bck", "bck_err", "amp", "amp_err", "alpha", "alpha_err", "ratio",
                "ratio_err", "theta", "theta_err", "beta", "beta_err", "flux", "flux_err", "background",
                "background_err", "dx", "dx_err", "dy", "dy_err"]
    assert list(table)[: len(expected)] == expected
    assert np.allclose(table["r0"], params[:, 0], rtol=2e-3)
    assert list(table["status"]) == ["converged", "converged"]
    assert (tmp_path / "params_fit.png").exists() and (tmp_path / "params.config.yaml").exists()
    units = yaml.safe_load((tmp_path / "params.config.yaml").read_text())["units"]
    assert set(units) == set(table)
    assert (units["r0"], units["bck"], units["amp_err"], units["alpha"], units["beta"], units["flux"]) == \
        ("m", "rad^2 m^2", "rad^2", "1/m", "-", "e-")
    assert "warning" not in capsys.readouterr().err
    # Fits stopped by --max-iter: one warning line, and the status column says so.
    capped = tmp_path / "capped.csv"
    assert main([*args[:6], str(capped), *args[7:], "--max-iter", "1"]) == 0
    assert capsys.readouterr().err.strip() == \
        f"astrolearn: warning: 2 of 2 fit(s) did not converge: 2 at the iteration cap (status column of {capped})"
    assert list(read_csv(capped)["status"]) == ["iteration_cap", "iteration_cap"]
    before = out.read_bytes()
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["psf", "fit", str(tmp_path / "missing.fits"), "--instrument", str(inst_file), "--out",
                 str(tmp_path / "m.csv")]) == 2
    assert "missing.fits: no such file" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


def test_real_nirc2_frame(shared_data, tmp_path):
    """The real NIRC2 frame (FeII, 1.6455 um) converges to r0(500 nm) in 0.12-0.20 m."""
    frame = shared_data / "keck" / "20130801_n0004.fits"
    inst = load_instrument("nirc2")
    data = load_psf_images(frame, inst)
    result = PsfFitter(inst, fit_static=False).fit(data.images, data.weights)
    assert 0.12 <= result.values[0, 0] <= 0.20
    assert np.isfinite(result.chi2[0])


def test_user_static_basis_from_fits(tmp_path):
    """--static-basis: a user's cube of modes in nm drives both the simulator and the fit."""
    import yaml

    inst = circular(npix=64)
    inst_file = tmp_path / "circ.yaml"
    inst_file.write_text(yaml.safe_dump(inst.to_dict()))
    n = inst.pupil_npix
    x = (np.arange(n) - (n - 1) / 2) / (n / 2)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    basis = tmp_path / "modes.fits"
    fits.writeto(basis, np.stack([100 * xx * yy, 100 * xx**3]).astype(np.float32))
    sim = tmp_path / "sim"
    common = ["--instrument", str(inst_file), "--static-basis", str(basis)]
    assert main(["psf", "simulate", *common, "--n", "1", "--seed", "4", "--out", str(sim), "--no-progress"]) == 0
    out = tmp_path / "fit.csv"
    assert main(["psf", "fit", str(sim / "shard-00000.h5"), *common, "--out", str(out), "--max-iter", "10",
                 "--no-progress"]) == 0
    table = read_csv(out)
    assert "stat_2" in table and "stat_3" not in table


def test_gaussian_prior_holds_only_what_the_data_leave_free():
    inst = circular(npix=64)
    params, names, images = _noiseless(inst, 2, 5)
    weights = np.ones_like(images) / images.max() ** 2
    fitter = PsfFitter(inst, fit_static=False, batch=2)
    start = {n: params[:, names.index(n)] for n in fitter.names if n in names}
    start.update(flux=images.sum(axis=(1, 2)), background=np.zeros(2), dx=np.zeros(2), dy=np.zeros(2))
    table = dict(start, r0=2 * start["r0"])
    for n in fitter.names:
        table[f"{n}_err"] = np.full(2, np.inf)
    # An infinitely wide prior is no prior: the fit finds the truth from a wrong r0.
    free = fitter.fit(images, weights, initial=table, prior=table)
    np.testing.assert_allclose(free.values[:, 0], start["r0"], rtol=1e-3)
    # A prior far tighter than the data pulls r0 to its centre (2x the truth); the others stay.
    table["r0_err"] = 1e-6 * table["r0"]
    held = fitter.fit(images, weights, initial=table, prior=table)
    np.testing.assert_allclose(held.values[:, 0], table["r0"], rtol=1e-4)
    assert np.all(held.chi2 > free.chi2)


def test_error_statistics_over_a_subset():
    from astrolearn.psf.evaluate import error_rows

    truth = {"r0": np.array([0.1, 0.2, 0.4]), "stat_1": np.array([10.0, 0.0, -5.0])}
    est = {"r0": np.array([0.11, 0.2, 4.0]), "stat_1": np.array([12.0, 1.0, -5.0])}
    crb = {"r0": np.array([0.01, 0.01])}  # bounds on the first two PSFs only
    keep = np.array([True, True, False])  # the third fit failed
    all_rows = error_rows("fit", truth, est, ["r0", "stat_1"], crb, 1.0)
    ok_rows = error_rows("fit", truth, est, ["r0", "stat_1"], crb, 1.0, keep=keep, subset="converged")
    assert [(r["subset"], r["n"], r["unit"]) for r in all_rows + ok_rows] == \
        [("all", 3, "m"), ("all", 3, "nm"), ("converged", 2, "m"), ("converged", 2, "nm")]
    assert np.isclose(all_rows[0]["median_rel_%"], 10.0) and np.isclose(ok_rows[0]["median_rel_%"], 5.0)
    assert np.isclose(ok_rows[0]["err/CRB_median"], 0.5) and np.isclose(ok_rows[1]["median_abs"], 1.5)
    none = error_rows("fit", truth, est, ["r0"], None, 1.0, keep=np.zeros(3, bool), subset="converged")
    assert none[0]["n"] == 0 and np.isnan(none[0]["median_abs"])


def test_evaluation_fits_resume_after_an_interruption(tmp_path):
    """psf evaluate's fit cache is written batch by batch: a rerun fits only what is missing."""
    from astrolearn.psf.evaluate import _cached_fit

    inst = circular(npix=64)
    _, _, images = _noiseless(inst, 6, 11)
    weights = np.ones_like(images) / images.max() ** 2
    fitter = PsfFitter(inst, fit_static=False, batch=2, max_iter=20)
    whole, _ = _cached_fit(fitter, images, weights, None, tmp_path / "whole.npz", progress=False)

    calls, stop_at = [], [2]
    real_fit = fitter.fit

    def interrupted(images, *args, **kwargs):
        calls.append(len(images))
        if len(calls) in stop_at:
            raise InterruptedError  # stands for Ctrl-C or a job killed mid-evaluation
        return real_fit(images, *args, **kwargs)

    fitter.fit = interrupted
    with pytest.raises(InterruptedError):
        _cached_fit(fitter, images, weights, None, tmp_path / "cache.npz", progress=False)
    calls.clear()
    stop_at.clear()
    resumed, seconds = _cached_fit(fitter, images, weights, None, tmp_path / "cache.npz", progress=False)
    assert calls == [2, 2] and seconds > 0  # the first batch came from the cache
    for name in fitter.names:
        np.testing.assert_array_equal(resumed[name], whole[name])
    assert list(resumed["status"]) == list(whole["status"])
    calls.clear()
    _cached_fit(fitter, images, weights, None, tmp_path / "cache.npz", progress=False)
    assert calls == []  # complete: nothing refitted
