"""Pupils from FITS masks (``pupil: {kind: file}``, ``--pupil``), the shipped masks, and maoppy on them."""

import warnings

import numpy as np
import pytest
import torch
from astropy.io import fits

from astrolearn.cli import main
from astrolearn.errors import UserError
from astrolearn.io.shards import read_meta
from astrolearn.psf import pupils as P
from astrolearn.psf.fit import PsfFitter
from astrolearn.psf.instruments import Instrument, load_instrument
from astrolearn.psf.model import PSD_NAMES, PsfaoModel, r0_to_wavelength
from astrolearn.psf.simulate import DEFAULT_SIM, column_names, draw_parameters
from psf_helpers import DETECTOR

KECK_MASK = "keck_largehex_272px.fits"
LYOT_MASK = "sphere_alc2_lyot_stop_384px.fits"


def _write(path, data):
    fits.writeto(path, np.asarray(data))
    return str(path)


# ---- resampling ---------------------------------------------------------------------------
@pytest.mark.parametrize("n, pixels_across", [(50, 40.0), (13, 12.3), (300, 290.0), (37, 37.0)])
def test_resampling_conserves_transmitted_area(n, pixels_across):
    diameter = 10.0
    mask = np.random.default_rng(1).uniform(size=(37, 37))
    pixel = diameter / pixels_across  # the output grid (n pixels) covers the mask
    out = P.resample_mask(mask, n, pixel, diameter)
    area_in = mask.sum() * (diameter / 37) ** 2
    assert abs(out.sum() * pixel**2 - area_in) <= 1e-12 * area_in
    assert out.min() >= 0 and out.max() <= 1 + 1e-12
    if n == 37:  # the same grid: the mask itself
        assert np.allclose(out, mask, rtol=0, atol=1e-14)


def test_resampling_is_an_area_average_not_nearest_neighbour():
    # A 2x2 mask with one open quarter onto a 3x3 grid over the same span: the centre pixel
    # overlaps each quarter by a quarter of its area, the corner pixels one quarter each fully.
    out = P.resample_mask(np.array([[1.0, 0.0], [0.0, 0.0]]), 3, 1.0 / 3, 1.0)
    assert np.allclose(out, [[1, 0.5, 0], [0.5, 0.25, 0], [0, 0, 0]], atol=1e-14)


def test_rotation_and_flip(tmp_path):
    mask = np.zeros((9, 9))
    mask[7:9, 4] = 1.0  # a bar towards +x (axis 0), on the y = 0 line
    mask[4, 5] = 0.5  # and a grey pixel at +y, so that flips and rotations differ
    path = _write(tmp_path / "m.fits", mask)
    got = lambda **kw: P.file_pupil(9, 1.0, 9.0, 0.0, path=path, **kw)  # noqa: E731 (the mask's own grid)
    assert np.allclose(got(), mask)
    rot = got(rotation_deg=90)  # +x goes to +y, +y to -x
    assert rot[4, 7:9].tolist() == [1, 1] and rot[3, 4] == 0.5
    assert np.allclose(got(rotation_deg=-270), rot) and np.allclose(got(rotation_deg=360), mask)
    assert np.allclose(got(rotation_deg=180), mask[::-1, ::-1])
    flip_x = got(flip="x")  # x -> -x: the bar points to -x, the grey pixel stays
    assert flip_x[0:2, 4].tolist() == [1, 1] and flip_x[4, 5] == 0.5
    assert np.allclose(got(flip="y"), mask[:, ::-1])
    assert np.allclose(got(flip="x", rotation_deg=90), np.rot90(mask[::-1], 1))  # flip first, then turn
    with pytest.raises(UserError, match="multiple of 90"):
        got(rotation_deg=45)
    with pytest.raises(UserError, match="flip must be"):
        got(flip="z")


# ---- bad masks ----------------------------------------------------------------------------
def _nan_mask():
    mask = np.ones((16, 16))
    mask[3, 4] = np.nan
    return mask


@pytest.mark.parametrize("data, message", [
    (_nan_mask(), "1 NaN/infinite value"),
    (np.ones((2, 16, 16)), "square 2-D array"),
    (np.ones((16, 12)), "square 2-D array"),
    (np.full((16, 16), 255.0), "transmissions in [0, 1]"),
    (np.zeros((16, 16)), "not all 0"),
    (None, "no such file"),
    (b"not a fits file", "not a readable FITS file"),
])
def test_bad_mask_files_are_refused_naming_the_file(tmp_path, data, message):
    path = tmp_path / "bad.fits"
    if isinstance(data, bytes):
        path.write_bytes(data * 300)
    elif data is not None:
        _write(path, data)
    with pytest.raises(UserError) as exc:
        P.make_pupil({"kind": "file", "path": str(path)}, 32, 0.5, 10.0, 0.0)
    text = str(exc.value)
    assert str(path) in text and message in text and "\n" not in text


def test_file_pupil_options_are_checked():
    with pytest.raises(UserError, match="needs a path"):
        P.make_pupil({"kind": "file"}, 32, 0.5, 10.0, 0.0)
    with pytest.raises(UserError, match=r"unknown option\(s\) \['rotation'\]"):
        P.make_pupil({"kind": "file", "path": KECK_MASK, "rotation": 90}, 32, 0.5, 10.0, 0.0)


@pytest.mark.parametrize("verb", ["simulate", "fit", "predict"])
def test_cli_refuses_a_bad_pupil_file_and_writes_nothing(tmp_path, capsys, verb):
    bad = _write(tmp_path / "nan.fits", _nan_mask())
    frame = _write(tmp_path / "frame.fits", np.ones((128, 128), np.float32))
    before = sorted(tmp_path.iterdir())
    args = {"simulate": ["--n", "2", "--out", str(tmp_path / "set")],
            "fit": [frame, "--out", str(tmp_path / "fit.csv")],
            "predict": [frame, "--out", str(tmp_path / "cnn.csv")]}[verb]
    assert main(["psf", verb, "--instrument", "nirc2", "--pupil", bad, "--no-progress", *args]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("astrolearn: error: ") and "nan.fits" in lines[0]
    assert sorted(tmp_path.iterdir()) == before


def test_cli_pupil_option_uses_the_mask(tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["psf", "simulate", "--instrument", "nirc2", "--static", "none", "--n", "2", "--pupil", KECK_MASK,
                 "--out", str(out), "--no-progress"]) == 0
    meta = read_meta(next(out.glob("*.h5")))
    # A shipped mask keeps its name; the preset's pupil grid (min_pixels) is kept.
    assert meta["instrument"]["pupil"] == {"kind": "file", "path": KECK_MASK, "min_pixels": 80}
    assert meta["instrument"]["name"] == "nirc2"


# ---- shipped masks and presets ------------------------------------------------------------
def test_shipped_masks_and_presets():
    assert P.shipped_masks() == [KECK_MASK, LYOT_MASK]
    assert (P.MASK_DIR / "LICENSE-P3.txt").read_text().startswith("Copyright 2020-2022 Olivier Beltramo-Martin")
    for name in P.shipped_masks():
        assert (P.MASK_DIR / name).stat().st_size < 200_000
        assert set(np.unique(P.read_mask(name))) == {0.0, 1.0}
    for preset, mask, stat in (("nirc2", KECK_MASK, 9), ("irdis", LYOT_MASK, 11)):
        inst = load_instrument(preset)
        assert inst.pupil["path"] == mask and inst.static_basis.shape[0] == stat
        # The area-weighted pupil transmits the mask's area, in m^2.
        area = P.read_mask(mask).sum() * (inst.diameter_m / P.read_mask(mask).shape[0]) ** 2
        assert abs(inst.pupil_array.sum() * inst.pupil_pixel_m**2 - area) <= 1e-12 * area
        drawn = load_instrument(f"{preset}-drawn")
        base, data = drawn.to_dict(), inst.to_dict()
        assert {k for k in data if data[k] != base[k]} == {"name", "fullname", "pupil"}
        # The masks are not exactly centro-symmetric, but the modes even on the drawn pupil stay
        # even (sign-free for the CNN, started off the saddle by the fit) on the mask.
        np.testing.assert_array_equal(P.even_modes(inst.static_basis, inst.pupil_array),
                                      P.even_modes(drawn.static_basis, drawn.pupil_array))


def test_shipped_masks_are_the_reference_files(shared_data):
    for shipped, ref in ((KECK_MASK, "keck/keck_pupil_largeHex_272px.fits"),
                         (LYOT_MASK, "vlt/ALC2LyotStop_measured.fits")):
        assert np.array_equal(P.read_mask(shipped), fits.getdata(shared_data / ref))
    assert (P.MASK_DIR / "LICENSE-P3.txt").read_bytes() == (shared_data / "keck/LICENSE-P3").read_bytes()


# ---- against maoppy, on the same real-mask pupil array ------------------------------------
def _keck_file_instrument(npix, pixel_mas, wavelength_um):
    # scale: maoppy and no min_pixels: our pupil grid is maoppy's (npup pixels across D).
    return Instrument(name="keck-file", diameter_m=10.5, obscuration=0.2311, pixel_scale_mas=pixel_mas,
                      wavelength_um=wavelength_um, nact=21, npix=npix, detector=dict(DETECTOR),
                      pupil={"kind": "file", "path": KECK_MASK, "scale": "maoppy"})


def _maoppy_on(inst):
    """maoppy's Psfao for ``inst``, given our pupil array; and the flux factor between the two.

    maoppy normalises the OTF by the sum of the pupil amplitude, we by the sum of its square
    (the transmitted intensity: unit total flux); the two agree on binary pupils only.
    """
    pytest.importorskip("maoppy")
    from maoppy.instrument import Instrument as MaoppyInstrument
    from maoppy.psfmodel import Psfao

    pupil = inst.pupil_array
    system = MaoppyInstrument(D=inst.diameter_m, occ=inst.obscuration, res=inst.pixel_rad, Nact=inst.nact)
    system.pupil = lambda shape, wvl=None, samp=None: pupil if shape == pupil.shape else 1 / 0
    model = Psfao((inst.npix, inst.npix), system=system, samp=inst.sampling, lext=inst.outer_scale_m)
    return model, (pupil**2).sum() / pupil.sum()


@pytest.mark.parametrize("npix, pixel_mas, wavelength_um, params, dx, dy", [
    (128, 9.942, 1.6455, (0.3, 1e-2, 1.0, 0.05, 1.2, 0.3, 1.6), 0.0, 0.0),
    (64, 9.942, 2.12, (0.15, 5e-2, 3.0, 0.02, 0.7, -0.4, 2.8), 0.3, -0.2),
    (64, 30.0, 1.2, (0.2, 5e-3, 2.0, 0.1, 1.3, 0.5, 1.5), -0.25, 0.4),  # undersampled: binned
])
def test_keck_mask_model_agrees_with_maoppy(npix, pixel_mas, wavelength_um, params, dx, dy):
    inst = _keck_file_instrument(npix, pixel_mas, wavelength_um)
    reference_model, flux = _maoppy_on(inst)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = reference_model(list(params), dx=dx, dy=dy) / flux
    ours = PsfaoModel(inst)(torch.tensor([params]), dx=dx, dy=dy)[0].numpy()
    assert np.abs(ours - reference).max() / reference.max() <= 1e-6


def test_noiseless_maoppy_psfs_on_the_keck_mask_are_recovered():
    inst = _keck_file_instrument(64, 20.0, 2.2)  # 64 px of 20 mas: the AO halo stays in the field
    reference_model, _ = _maoppy_on(inst)
    truth = draw_parameters(inst, dict(DEFAULT_SIM, static=False, noise="none"), 6, np.random.default_rng(5))
    names = column_names(inst, False)
    col = {name: truth[:, names.index(name)] for name in names}
    images = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for row, flux, dx, dy in zip(truth[:, [names.index(n) for n in PSD_NAMES]], col["flux"], col["dx"], col["dy"]):
            psd = row.copy()
            psd[0] = r0_to_wavelength(psd[0], inst.wavelength_m)
            images.append(flux * reference_model(list(psd), dx=dx, dy=dy))
    images = np.array(images)
    result = PsfFitter(inst, fit_static=False, batch=6).fit(images, np.ones_like(images) / images.max() ** 2)
    for name in ("r0", "amp", "alpha", "beta"):
        err = np.abs(result.values[:, result.names.index(name)] / col[name] - 1)
        assert np.median(err) <= 0.01, (name, err)


def test_train_takes_pupil_only_online(tmp_path, capsys):
    assert main(["psf", "train", str(tmp_path), "--pupil", KECK_MASK, "--out", str(tmp_path / "run")]) == 2
    assert "--pupil: only with --online" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
