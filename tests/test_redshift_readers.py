"""Survey spectrum readers on the real files of ../shared/data/realspec (issue 14, section 2).

Every file of ``truth.csv`` is read on its own, as ``astrolearn redshift estimate FILE`` reads it:
format auto-detected, one spectrum per truth row in input order, wavelengths (vacuum) spanning
the truth's ``wave_min_A``-``wave_max_A`` within a pixel, flux densities of the right order, the
survey's resolving power. Catalogues and unknown FITS files are one-line errors.
"""

import csv

import numpy as np
import pytest
from astropy.io import fits

from astrolearn.cli import main
from astrolearn.errors import UserError
from astrolearn.redshift import io as rio
from astrolearn.redshift.readers import read_survey, robust_sigma

#: format -> (which wavelengths truth.csv's wave_min_A/wave_max_A describe, whether they are air)
#: "valid": first/last pixel with ivar > 0; "grid": first/last pixel of the file.
RANGE_RULE = {"sdss": ("valid", False), "lamost": ("valid", False), "desi": ("valid", False),
              "6dfgs": ("grid", True), "apogee": ("grid", False), "table": ("grid", False)}
KIND_OF_DIR = {"sdss": "sdss", "lamost": "lamost", "desi": "desi", "6dfgs": "6dfgs", "ozdes": "ozdes",
               "apogee": "apogee", "jwst": "table"}
#: median flux density bounds [erg/s/cm2/A] of the flux-calibrated formats
FLUX_BOUNDS = {"sdss": (1e-18, 1e-14), "desi": (1e-19, 1e-15), "apogee": (1e-17, 1e-12), "table": (1e-23, 1e-19)}
#: resolving power lambda / FWHM (median over the spectrum) expected per format
R_BOUNDS = {"sdss": (1500, 2600), "lamost": (1799, 1801), "desi": (3000, 6000), "6dfgs": (999, 1001),
            "ozdes": (1399, 1401), "apogee": (22499, 22501), "table": (30, 330)}


def truth_by_file(shared_data):
    root = shared_data / "realspec"
    if not (root / "truth.csv").is_file():
        pytest.skip(f"{root}/truth.csv not found")
    rows: dict = {}
    with open(root / "truth.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["file"], []).append(r)
    return root, rows


def test_every_realspec_file_is_read_with_its_wavelengths_units_and_resolution(shared_data):
    root, rows = truth_by_file(shared_data)
    assert sum(len(v) for v in rows.values()) == 82
    for name, truth in rows.items():
        kind = KIND_OF_DIR[name.split("/")[0]]
        chunks = rio.open_input(root / name)
        assert {c.kind for c in chunks} == {kind}, name
        sp = chunks[0].load()
        assert len(sp.flux) == len(truth), name  # one spectrum per object, in input order
        assert np.all(np.diff(sp.wave) >= 0) and sp.lsf_sigma.shape == sp.wave.shape
        dw = np.gradient(sp.wave)
        for i, t in enumerate(truth):
            good = sp.ivar[i] > 0
            assert good.sum() > 0.5 * sp.wave.size, name
            rule, air = RANGE_RULE.get(kind, ("grid", "Linear" in name))
            lo, hi = (sp.wave[good][[0, -1]] if rule == "valid" else sp.wave[[0, -1]])
            want = np.array([float(t["wave_min_A"]), float(t["wave_max_A"])])
            if air:  # truth lists the file's air wavelengths; the reader gives vacuum
                want = rio.air_to_vacuum(want)
            pix = np.interp([lo, hi], sp.wave, dw)
            assert np.all(np.abs([lo - want[0], hi - want[1]]) <= pix), (name, lo, hi, want)
            if kind in FLUX_BOUNDS:
                lo_f, hi_f = FLUX_BOUNDS[kind]
                assert lo_f < abs(np.median(sp.flux[i][good])) < hi_f, (name, np.median(sp.flux[i][good]))
            if sp.truth:  # pipeline redshift carried by the file = truth.csv's
                assert sp.truth["names"] == ["z"] and abs(sp.truth["params"][i, 0] - float(t["z"])) < 1e-5, name
        r = np.median(sp.wave / sp.lsf_sigma) / 2.3548
        assert R_BOUNDS[kind][0] <= r <= R_BOUNDS[kind][1], (name, r)


def test_sdss_values_match_the_file(shared_data):
    root, _ = truth_by_file(shared_data)
    path = root / "sdss" / "spec-3655-55240-0660.fits"  # picca variant: no EXTNAME, upper-case columns
    sp = rio.open_input(path)[0].load()
    with fits.open(path) as h:
        t = h[1].data
        wave = 10 ** t["LOGLAM"].astype(np.float64)
        np.testing.assert_allclose(sp.wave, wave)
        np.testing.assert_allclose(sp.flux[0], t["FLUX"] * 1e-17, rtol=1e-6)
        np.testing.assert_allclose(sp.ivar[0][t["AND_MASK"] == 0], t["IVAR"][t["AND_MASK"] == 0] * 1e34, rtol=1e-6)
        # LSF from WDISP: sigma in 1e-4 dex pixels
        np.testing.assert_allclose(sp.lsf_sigma[2000], t["WDISP"][2000] * 1e-4 * np.log(10) * wave[2000], rtol=1e-6)
    assert sp.targetid[0] == 3655 * 10**9 + 55240 * 10**4 + 660


def test_air_wavelengths_become_vacuum_and_6dfgs_gets_a_noise_estimate(shared_data):
    root, _ = truth_by_file(shared_data)
    path = root / "6dfgs" / "0000171_1d.fits"
    sp = rio.open_input(path)[0].load()
    air = fits.getdata(path, 1)["WAVE"].astype(float)
    # rounded air wavelengths (0.1 A) -> a linear solution, then vacuum (+1.1 A at 3932 A)
    assert np.max(np.abs(sp.wave - rio.air_to_vacuum(air))) < 0.06
    assert np.allclose(np.diff(sp.wave, 2), 0, atol=1e-3)  # linear in air is nearly linear in vacuum
    flux = fits.getdata(path, 1)["FLUX"]
    assert np.all(sp.ivar[0][flux <= -998] == 0)
    # linear-WCS 2dfdr file (air) and its log-vacuum re-write hold the same galaxy on grids 1 A apart
    lin = rio.open_input(root / "ozdes" / "emlLinearSkyAirNoHelio.fits")[0].load()
    log = rio.open_input(root / "ozdes" / "emlLogVacuumHelioMultiple.fits")[0].load()
    assert len(lin.flux) == 1 and len(log.flux) == 3 and list(log.targetid) == [0, 1, 2]
    assert abs(lin.wave[0] - 3754.6) < 0.2 and abs(log.wave[0] - 3754.7) < 0.1


def test_robust_sigma_recovers_white_noise_despite_a_line():
    rng = np.random.default_rng(1)
    x = np.arange(2000.0)
    flux = 100 + 0.01 * x + rng.normal(0, 2.0, x.size) + 300 * np.exp(-0.5 * ((x - 1000) / 2) ** 2)
    good = np.ones(x.size, bool)
    good[:10] = False
    sig = robust_sigma(flux, good)
    assert np.all(np.isnan(sig[:10]))
    assert abs(np.median(sig[good]) / 2.0 - 1) < 0.05
    assert abs(sig[1000] / 2.0 - 1) < 0.3  # the line (peak 150 sigma) barely moves the noise under it


def test_jwst_fnu_is_converted_to_flambda(shared_data):
    root, _ = truth_by_file(shared_data)
    path = root / "jwst" / "static-test-driz-center-bkg_933.spec.fits"
    sp = rio.open_input(path)[0].load()
    t = fits.getdata(path, "SPEC1D")
    i = int(np.argmax(t["flux"]))
    lam = t["wave"][i] * 1e4
    j = int(np.argmin(np.abs(sp.wave - lam)))
    assert sp.flux[0, j] == pytest.approx(t["flux"][i] * 1e-29 * 2.99792458e18 / lam**2, rel=1e-9)
    assert sp.ivar[0, j] == pytest.approx((t["err"][i] * 1e-29 * 2.99792458e18 / lam**2) ** -2, rel=1e-9)
    assert np.all(sp.ivar[0][np.interp(sp.wave, t["wave"] * 1e4, t["err"]) <= 0] == 0)


@pytest.mark.parametrize("name", ["QSO_cat_fuji_dark_healpix.fits.gz", "QSO_cat_fuji_dark_tile.fits.gz"])
def test_catalogue_is_refused_with_one_line_and_no_output(shared_data, tmp_path, capsys, name):
    root, _ = truth_by_file(shared_data)
    out = tmp_path / "out"
    assert main(["redshift", "estimate", str(root / "desi" / name), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and name in err[0] and "catalogue" in err[0] and "not a spectrum" in err[0]
    assert not out.exists()


def test_unknown_or_broken_fits_are_one_line_errors(tmp_path):
    other = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(other)
    with pytest.raises(UserError, match="no known spectrum format"):
        rio.open_input(other)
    # SDSS-like file without a usable pixel: detected, then refused
    cols = [fits.Column(name=n, format="E", array=a) for n, a in
            (("loglam", np.linspace(3.6, 3.9, 5)), ("flux", np.ones(5)), ("ivar", np.zeros(5)))]
    sdss = tmp_path / "spec-broken.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols),
                  fits.BinTableHDU.from_columns([fits.Column(name="Z", format="E", array=[np.nan])])]).writeto(sdss)
    with pytest.raises(UserError, match="spec-broken.fits: a spectrum has no usable pixel"):
        rio.open_input(sdss)
    with pytest.raises(UserError, match="image.fits: not a readable sdss spectrum"):
        read_survey(other, "sdss")


def test_sdss_galaxy_end_to_end(shared_data, tmp_path):
    root, _ = truth_by_file(shared_data)
    out = tmp_path / "e"
    path = root / "sdss" / "spec-0266-51602-0001.fits"
    assert main(["redshift", "estimate", str(path), "--out", str(out), "--zrange", "0.01", "0.5", "--quiet",
                 "--workers", "1"]) == 0
    head, row = (line.split(",") for line in (out / "redshifts.csv").read_text().splitlines()[:2])
    row = dict(zip(head, row))
    assert abs(float(row["z"]) - 0.02128) < 0.003 * 1.02128
    assert float(row["z_true"]) == pytest.approx(0.021277, abs=1e-5)  # the file's pipeline Z
