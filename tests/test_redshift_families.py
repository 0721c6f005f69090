"""NISP simulator with another continuum template family (``--templates``): continua, metadata, refusals."""

import numpy as np
import pytest

from astrolearn.cli import main
from astrolearn.io.shards import read_shard
from astrolearn.redshift.simulate import TRUTH_COLUMNS, NispConfig, simulate, simulate_batch
from astrolearn.redshift.templates import calzetti_klambda, load_family

#: Power-law slopes of the synthetic family, f_lambda ~ lambda^slope.
SLOPES = {"blue": -1.0, "red": 0.5}


def write_family(folder, slopes=SLOPES, wave=np.arange(3000.0, 14000.0, 2.0)):
    folder.mkdir()
    for name, slope in slopes.items():
        np.savetxt(folder / f"{name}.dat", np.column_stack([wave, 1e-17 * (wave / 5000.0) ** slope]),
                   header="lambda flux")
    return folder


def test_continuum_follows_the_family(tmp_path):
    family = write_family(tmp_path / "family")
    assert load_family(family).names == ["blue", "red"]
    # no lines and negligible noise: the spectrum is the drawn template, reddened and scaled
    cfg = NispConfig(templates=str(family), no_line_fraction=1.0, noise=1e-30)
    flux, _, params = simulate_batch(cfg, np.random.default_rng(3), 40)
    col = {c: params[:, i] for i, c in enumerate(TRUTH_COLUMNS)}
    rest = cfg.wave[None, :] / (1 + col["z"][:, None])
    slope = np.array(list(SLOPES.values()))[col["template"].astype(int)]
    dust = 10 ** (-0.4 * 0.44 * col["ebv_gas"][:, None] * calzetti_klambda(rest))
    ratio = flux / (rest ** slope[:, None] * dust)
    assert set(col["template"]) == {0, 1}
    assert np.all(np.std(ratio, axis=1) / np.mean(ratio, axis=1) < 1e-3)
    # the package's continua do not follow these power laws
    flux_pkg, _, _ = simulate_batch(NispConfig(no_line_fraction=1.0, noise=1e-30), np.random.default_rng(3), 40)
    ratio_pkg = flux_pkg / (rest ** slope[:, None] * dust)
    assert np.median(np.std(ratio_pkg, axis=1) / np.mean(ratio_pkg, axis=1)) > 0.05


def test_family_recorded_in_shards(tmp_path):
    family = write_family(tmp_path / "family")
    out = tmp_path / "sim"
    assert main(["redshift", "simulate", "--n", "5", "--out", str(out), "--templates", str(family), "--quiet"]) == 0
    meta = read_shard(out / "shard-00000.h5", domain="redshift").meta
    assert meta["templates"] == {"family": str(family.resolve()), "names": ["blue", "red"]}
    assert meta["config"]["templates"] == str(family)
    default = simulate(tmp_path / "pkg", 3, progress=False)[0]
    assert read_shard(default).meta["templates"]["family"] == "package"


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such template file or directory"),
    ("empty_dir", "no template files"),
    ("nan", "must be finite"),
    ("unsorted", "strictly increasing"),
    ("one_column", "not a template text file"),
    ("short", "the simulation needs 3446-12613 A"),
    ("no_optical", "must cover 4000-8000 A"),
    ("bad_fits", "not a continuum template file"),
])
def test_bad_families_refused_in_one_line(tmp_path, capsys, case, expected):
    path = tmp_path / f"{case}.dat"
    wave = np.arange(3000.0, 14000.0, 10.0)
    if case == "empty_dir":
        path = tmp_path / "empty"
        path.mkdir()
        (path / "readme.md").write_text("no templates here")
    elif case == "nan":
        path.write_text("3000 1\n5000 nan\n14000 1\n")
    elif case == "unsorted":
        path.write_text("3000 1\n9000 1\n5000 1\n14000 1\n")
    elif case == "one_column":
        path.write_text("3000\n5000\n")
    elif case == "short":
        np.savetxt(path, np.column_stack([np.arange(3000.0, 9001.0, 10.0), np.ones(601)]))
    elif case == "no_optical":
        np.savetxt(path, np.column_stack([wave, np.where(wave < 9000, 0.0, 1.0)]))
    elif case == "bad_fits":
        path = tmp_path / "bad.fits"
        path.write_bytes(b"not a FITS file")
    out = tmp_path / "sim"
    assert main(["redshift", "simulate", "--n", "5", "--out", str(out), "--templates", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("astrolearn: error:") and expected in err and path.name in err and err.count("\n") == 1
    assert not out.exists()
