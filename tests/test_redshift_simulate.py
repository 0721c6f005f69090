"""NISP simulator: truth, determinism, resumability, overwrite protection."""

import hashlib

import numpy as np
import pytest

from astrolearn.errors import UserError
from astrolearn.io.shards import read_shard
from astrolearn.redshift.lines import LINES
from astrolearn.redshift.simulate import NispConfig, TRUTH_COLUMNS, simulate, simulate_batch


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_grid_truth_and_noise_level():
    cfg = NispConfig()
    assert cfg.wave.size == 512 and cfg.wave[0] == 12060.0 and cfg.wave[1] - cfg.wave[0] == pytest.approx(13.4)
    flux, noise, params = simulate_batch(cfg, np.random.default_rng(0), 300)
    assert flux.shape == noise.shape == (300, 512) and flux.dtype == np.float32
    col = {c: params[:, i] for i, c in enumerate(TRUTH_COLUMNS)}
    assert np.median(noise) == pytest.approx(2.6e-18, rel=0.15)
    assert ((col["z"] >= 0.5) & (col["z"] <= 2.5)).all()
    has = col["has_lines"] > 0
    assert 0.8 < has.mean() < 0.97
    assert np.all(col["halpha_flux"][~has] == 0) and np.all(col["lines_snr"][~has] == 0)
    f = col["halpha_flux"][has]
    assert f.min() >= 5e-17 and f.max() <= 1e-15
    # [NII] doublet ratio, Halpha S/N zero outside the window
    assert np.allclose(col["flux_NII6585"][has] / col["flux_NII6550"][has], 2.95)
    out = has & ((col["z"] * 0 + LINES["Halpha"]) * (1 + col["z"]) > 18920 + 60)
    assert np.all(col["halpha_snr"][out] < 1e-3)
    # the matched-filter S/N at the Euclid limit (2e-16) is ~3 (Halpha alone, R = 450)
    inw = has & (col["z"] > 0.9) & (col["z"] < 1.8)
    snr_per_flux = np.median(col["halpha_snr"][inw] / col["halpha_flux"][inw])
    assert 2.0 < snr_per_flux * 2e-16 < 4.5


def test_same_seed_same_bytes_and_resume(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    pa = simulate(a, 50, seed=7, cfg=NispConfig(shard_size=20), progress=False)
    pb = simulate(b, 50, seed=7, cfg=NispConfig(shard_size=20), progress=False)
    assert len(pa) == 3
    assert [sha(p) for p in pa] == [sha(p) for p in pb]
    c = simulate(tmp_path / "c", 50, seed=8, cfg=NispConfig(shard_size=20), progress=False)
    assert sha(c[0]) != sha(pa[0])
    # resume after a kill: missing shard regenerated identically, others untouched
    digest = sha(pa[1])
    pa[1].unlink()
    mtime0 = pa[0].stat().st_mtime_ns
    simulate(a, 50, seed=7, cfg=NispConfig(shard_size=20), progress=False)
    assert sha(pa[1]) == digest and pa[0].stat().st_mtime_ns == mtime0
    shard = read_shard(pa[2], domain="redshift")
    assert shard.arrays["flux"].shape == (10, 512)
    assert shard.column("targetid")[0] == 40
    assert np.allclose(shard.meta["wave"], NispConfig().wave)


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "sim"
    simulate(out, 10, seed=1, progress=False)
    with pytest.raises(UserError, match="overwrite"):
        simulate(out, 10, seed=1, progress=False)
    with pytest.raises(UserError, match="overwrite"):
        simulate(out, 10, seed=2, progress=False)
    simulate(out, 12, seed=2, overwrite=True, progress=False)
    assert read_shard(out / "shard-00000.h5").params.shape[0] == 12
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists"):
        simulate(other, 5, progress=False)


def test_bad_settings():
    with pytest.raises(UserError):
        NispConfig(zmin=2.0, zmax=1.0).validate()
    with pytest.raises(UserError):
        NispConfig(flux_min=0).validate()
