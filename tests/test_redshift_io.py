"""Spectrum readers (text, FITS batch, DESI coadd, shards) and their one-line errors."""

import numpy as np
import pytest
from astropy.io import fits

from astrolearn.errors import UserError
from astrolearn.redshift import io as rio
from astrolearn.redshift.templates import load_templates


def write_batch(path, n=3, m=200, nan=False, bunit="1e-17 erg/(s cm2 Angstrom)", truth=True):
    wave = np.linspace(12100, 18800, m)
    flux = np.random.default_rng(0).normal(size=(n, m))
    ivar = np.ones((n, m))
    if nan:
        flux[1, 5] = np.nan
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(wave, name="WAVELENGTH"), fits.ImageHDU(flux, name="FLUX"),
            fits.ImageHDU(ivar, name="IVAR")]
    hdus[2].header["BUNIT"] = bunit
    if truth:
        hdus.append(fits.BinTableHDU.from_columns(
            [fits.Column("TARGETID", "K", array=np.arange(100, 100 + n)), fits.Column("Z", "D", array=np.full(n, 1.2))],
            name="TRUTH"))
    fits.HDUList(hdus).writeto(path)
    return wave, flux


def test_text_spectrum(tmp_path):
    p = tmp_path / "s.dat"
    p.write_text("wave\tflux\terr\n15000 1e-18 2e-18\n14986.6 2e-18 0\n15013.4 nan 3e-18\n")
    with pytest.raises(UserError, match="NaN"):
        rio.read_text(p)
    p.write_text("# BUNIT = 1e-17 erg/s/cm2/Angstrom\nwave flux err\n15000 1 2\n14986.6 2 0\n15013.4 3 -1\n")
    sp = rio.read_text(p)
    assert np.all(np.diff(sp.wave) > 0)  # sorted
    assert sp.flux[0, 1] == pytest.approx(1e-17)
    assert sp.ivar[0, 1] == pytest.approx(1 / (2e-17) ** 2)
    assert sp.ivar[0, 0] == 0 and sp.ivar[0, 2] == 0  # err <= 0: ignored


def test_real_euclid_text_spectrum(shared_data):
    sp = rio.read_text(shared_data / "amazed" / "134845168.dat")
    assert sp.flux.shape == (1, 370)
    assert np.median(1 / np.sqrt(sp.ivar)) == pytest.approx(2.6e-18, rel=0.1)


def test_fits_batch_units_truth_and_errors(tmp_path):
    p = tmp_path / "b.fits"
    wave, flux = write_batch(p)
    chunks = rio.open_input(p, chunk_size=2)
    assert [c.count for c in chunks] == [2, 1] and chunks[1].first_row == 2
    sp = chunks[0].load()
    assert sp.flux[0, 0] == pytest.approx(flux[0, 0] * 1e-17)
    assert list(sp.targetid) == [100, 101]
    assert sp.truth["names"] == ["z"]
    bad = tmp_path / "nan.fits"
    write_batch(bad, nan=True)
    with pytest.raises(UserError, match="NaN"):
        rio.open_input(bad)[0].load()
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(b"SIMPLE  = T" + b"\0" * 100)
    with pytest.raises(UserError, match="corrupt.fits"):
        rio.open_input(corrupt)
    with pytest.raises(UserError, match="no such file"):
        rio.open_input(tmp_path / "missing.fits")
    shape = tmp_path / "shape.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.arange(10.0) + 1, name="WAVELENGTH"),
                  fits.ImageHDU(np.zeros((2, 9)), name="FLUX"), fits.ImageHDU(np.ones((2, 9)), name="IVAR")]).writeto(shape)
    with pytest.raises(UserError, match="do not match"):
        rio.open_input(shape)[0].load()
    unit = tmp_path / "unit.fits"
    write_batch(unit, bunit="Jy")
    with pytest.raises(UserError, match="unit"):
        rio.open_input(unit)[0].load()


def test_corrupt_shard(tmp_path):
    d = tmp_path / "set"
    d.mkdir()
    (d / "shard-00000.h5").write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="shard-00000.h5"):
        rio.open_input(d)


def test_desi_coadd_reader(shared_data):
    sp = rio.read_desi_coadd(shared_data / "desi" / "coadd-4-80613-thru20210324.fits")
    assert sp.flux.shape == (1, 2751 + 2326 + 2881)
    assert np.all(np.diff(sp.wave) >= 0)
    assert list(sp.targetid) == [39633345008634465]
    # DESI LSF: sigma ~ 0.5-0.9 A, flux in erg/s/cm2/A
    assert 0.4 < np.median(sp.lsf_sigma) < 1.0
    assert 1e-19 < np.median(np.abs(sp.flux)) < 1e-15


def test_shipped_templates_match_amazed_euclid_templates(shared_data):
    """Our kcorrect continua span the Euclid simulation templates to ~10% over 3500-10000 A."""
    from scipy.optimize import nnls

    tpl = load_templates()
    w = np.exp(np.arange(np.log(3500), np.log(10000), 1e-3))
    A = tpl.at_wavelengths(w)
    for path in sorted((shared_data / "amazed" / "templates").glob("*.dat")):
        d = np.loadtxt(path)
        ref = np.interp(w, d[:, 0], d[:, 1])
        ref = ref / np.median(ref)
        x, _ = nnls(A, ref)
        rms = np.sqrt(np.mean(((A @ x) / ref - 1) ** 2))
        assert rms < 0.2, path.name


def test_nisp_lsf_table_is_narrower_than_extended_source_default(shared_data):
    """The NISP LSF table (point source) gives R ~ 650-780 if its widths are sigmas; R = 450 is broader."""
    t = fits.getdata(shared_data / "amazed" / "EuclidNISPVSSPSF201707.fits", 1)
    r_point = t["wave"] / (2.3548 * t["width"])
    assert 600 < np.median(r_point) < 800
    assert np.median(r_point) > 450
