"""End to end through the CLI: simulate -> estimate -> evaluate, resume, overwrite, errors."""

import json

import h5py
import numpy as np
import pytest

from astrolearn.cli import main

GRID = ["--zrange", "0.8", "1.9", "--zstep", "2e-4"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("rs")
    sim, est = root / "sim", root / "est"
    assert main(["redshift", "simulate", "--n", "30", "--seed", "4", "--out", str(sim), "--shard-size", "20",
                 "--zrange", "0.9", "1.8", "--flux-range", "3e-16", "1e-15", "--quiet"]) == 0
    # 3 chunks on 2 worker processes
    assert main(["redshift", "estimate", str(sim), "--out", str(est), "--chunk-size", "15", "--quiet",
                 "--workers", "2", *GRID]) == 0
    return root, sim, est


def test_outputs_carry_pdf_grid_candidates_and_truth(pipeline):
    root, sim, est = pipeline
    files = sorted(est.glob("zpdf-*.h5"))
    assert len(files) == 3  # shard of 20 -> chunks of 15 + 5, then 10
    with h5py.File(files[0]) as f:
        assert f.attrs["sampling"] == "log" and f.attrs["zstep"] == 2e-4 and f.attrs["nz"] == f["zgrid"].shape[0]
        lp = f["log_pdf"][...].astype(float)
        z = f["zgrid"][...]
        w = np.zeros_like(z)
        w[:-1] += np.diff(z) / 2
        w[1:] += np.diff(z) / 2
        assert np.allclose((np.exp(lp) * w).sum(axis=1), 1.0, atol=1e-4)
        assert f["cand_z"].shape == (15, 5)
        names = json.loads(f["params"].attrs["names"])
        assert "z" in names and "halpha_flux" in names
        assert list(f["row"][...]) == list(range(15))
        assert "Halpha" in json.loads(f["coeffs"].attrs["names"])
    lines = (est / "redshifts.csv").read_text().splitlines()
    assert lines[0].startswith("targetid,z,z_err,z_proba,status")
    assert [int(r.split(",")[0]) for r in lines[1:]] == list(range(30))
    z = np.array([float(r.split(",")[1]) for r in lines[1:]])
    from astropy.table import Table

    fits_table = Table.read(est / "redshifts.fits")  # the same table, for FITS users
    assert list(fits_table["targetid"]) == list(range(30))
    np.testing.assert_allclose(fits_table["z"], z, rtol=1e-6)
    zt = np.array([float(r.split(",")[-1]) for r in lines[1:]])
    assert np.mean(np.abs(z - zt) / (1 + zt) < 0.003) > 0.7


def test_estimate_writes_the_calibrated_probability(pipeline):
    from astrolearn.redshift.calibration import load_calibration

    root, sim, est = pipeline
    lines = (est / "redshifts.csv").read_text().splitlines()
    head = lines[0].split(",")
    assert head[4:6] == ["status", "z_proba_cal"]
    rows = np.array([[float(r.split(",")[head.index(k)]) for k in ("z_proba", "z_proba_cal")] for r in lines[1:]])
    raw, cal = rows.T
    assert np.all((cal >= 0) & (cal <= 1))
    assert np.allclose(cal, load_calibration()(raw), rtol=1e-12)
    order = np.argsort(raw)
    assert np.all(np.diff(cal[order]) >= 0)  # never reorders the spectra


def test_evaluate_writes_tables_and_plots(pipeline, capsys):
    root, sim, est = pipeline
    assert main(["redshift", "evaluate", str(est), "--out", str(root / "ev")]) == 0
    md = (root / "ev" / "evaluation.md").read_text()
    assert "failures by alias" in md and "halpha_snr" in md
    # Every "+-" of the report is defined, and the flux bins have their unit.
    assert "rate +- sigma, sigma the 1-sigma binomial uncertainty" in md and "Halpha flux [erg/s/cm^2]" in md
    assert "| all | 30 | " in md and "| success rate +- sigma |" in md
    for name in ("evaluation.csv", "success_vs_flux.png", "success_vs_snr.png", "zbest_vs_ztrue.png"):
        assert (root / "ev" / name).stat().st_size > 0
    assert main(["redshift", "evaluate", str(est), "--out", str(root / "ev")]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_rerun_refuses_then_resumes(pipeline, capsys):
    root, sim, est = pipeline
    base = ["redshift", "estimate", str(sim), "--out", str(est), "--chunk-size", "15", "--quiet", "--workers", "1"]
    args = [*base, *GRID]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "complete" in err
    # a killed run: last chunk and summary missing -> resumed, identical result
    chunk = est / "zpdf-00002.h5"
    with h5py.File(chunk) as f:
        before = f["log_pdf"][...]
    chunk.unlink()
    (est / "redshifts.csv").unlink()
    assert main(args) == 0
    with h5py.File(chunk) as f:
        assert np.allclose(f["log_pdf"][...], before, atol=1e-3)
    # other settings on the same directory need --overwrite
    assert main([*base, "--zrange", "0.8", "1.8", "--zstep", "2e-4"]) == 2
    assert "overwrite" in capsys.readouterr().err


def test_bad_inputs_give_one_line_errors_and_no_output(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["redshift", "estimate", str(tmp_path / "missing.dat"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("astrolearn: error:") and "missing.dat" in err and err.count("\n") == 1
    assert not out.exists()
    bad = tmp_path / "bad.dat"
    bad.write_text("15000 1e-18 2e-18\n15013 nan 2e-18\n15026 1e-18 2e-18\n")
    assert main(["redshift", "estimate", str(bad), "--out", str(out)]) == 2
    assert "NaN" in capsys.readouterr().err and not out.exists()
    assert main(["redshift", "estimate", str(bad), "--out", str(out), "--zrange", "2", "1"]) == 2
    with pytest.raises(SystemExit) as exc:  # a count is checked by argparse (usage + error, exit 2)
        main(["redshift", "simulate", "--n", "0", "--out", str(tmp_path / "s")])
    assert exc.value.code == 2 and not (tmp_path / "s").exists()


def test_text_input_single_spectrum(tmp_path):
    from astrolearn.redshift.simulate import NispConfig, simulate_batch

    flux, noise, params = simulate_batch(NispConfig(zmin=1.3, zmax=1.3, flux_min=8e-16, flux_max=8e-16,
                                                    no_line_fraction=0), np.random.default_rng(0), 1)
    p = tmp_path / "one.dat"
    np.savetxt(p, np.c_[NispConfig().wave, flux[0], noise[0]], header="wave flux err")
    assert main(["redshift", "estimate", str(p), "--out", str(tmp_path / "o"), "--quiet", "--workers", "1", *GRID]) == 0
    row = (tmp_path / "o" / "redshifts.csv").read_text().splitlines()[1].split(",")
    assert abs(float(row[1]) - 1.3) / 2.3 < 0.003 and row[4] == "ok"


def test_a_second_estimate_in_the_same_process_uses_its_own_grid(pipeline, tmp_path):
    # The engine is cached per process (chunks of one run share it); another grid on the same
    # spectra, as in a notebook or the demo, must not reuse the first run's engine.
    root, sim, est = pipeline
    for name, grid in (("coarse", ["--zrange", "0.8", "1.9", "--zstep", "1e-3"]), ("fine", GRID)):
        assert main(["redshift", "estimate", str(sim), "--out", str(tmp_path / name), "--quiet", "--workers", "1",
                     *grid]) == 0
    sizes = {}
    for name in ("coarse", "fine"):
        with h5py.File(tmp_path / name / "zpdf-00000.h5") as f:
            sizes[name] = f["log_pdf"].shape[1]
    with h5py.File(est / "zpdf-00000.h5") as f:
        assert sizes["fine"] == f["log_pdf"].shape[1] > 2 * sizes["coarse"]
