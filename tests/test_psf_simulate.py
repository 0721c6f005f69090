import hashlib

import numpy as np
import pytest
import yaml

from astrolearn.cli import main
from astrolearn.errors import UserError
from astrolearn.io.shards import read_shard
from astrolearn.psf.simulate import simulate
from psf_helpers import circular


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_deterministic_and_resumable(tmp_path):
    inst = circular(npix=32)
    cfg = {"shard_size": 4}
    a = simulate(inst, 10, 7, tmp_path / "a", cfg, progress=False)
    b = simulate(inst, 10, 7, tmp_path / "b", cfg, progress=False)
    assert [p.name for p in a] == ["shard-00000.h5", "shard-00001.h5", "shard-00002.h5"]
    assert [_digest(p) for p in a] == [_digest(p) for p in b]
    # A killed run leaves shards missing: rerunning regenerates exactly them, keeps the others.
    a[1].unlink()
    mtime = a[0].stat().st_mtime_ns
    simulate(inst, 10, 7, tmp_path / "a", cfg, progress=False)
    assert _digest(a[1]) == _digest(b[1]) and a[0].stat().st_mtime_ns == mtime
    # Another seed into the same directory is refused without --overwrite.
    with pytest.raises(UserError, match="other settings"):
        simulate(inst, 10, 8, tmp_path / "a", cfg, progress=False)


def test_shard_content_and_noise_level(tmp_path):
    inst = circular(npix=64)
    simulate(inst, 6, 1, tmp_path / "s", {"static": False}, progress=False)
    shard = read_shard(tmp_path / "s" / "shard-00000.h5", instrument="circ")
    assert shard.arrays["images"].shape == (6, 64, 64) and shard.arrays["images"].dtype == np.float32
    assert shard.params.dtype == np.float64
    assert shard.names[:7] == ["r0", "bck", "amp", "alpha", "ratio", "theta", "beta"]
    assert shard.meta["instrument"]["name"] == "circ" and shard.meta["seed"] == 1
    r0 = shard.column("r0")
    assert ((r0 >= 0.05) & (r0 <= 0.4)).all()
    # photons = 10^(-0.4(m-25.44)) x 0.5 s x 50; read noise 60 x sqrt(50) e- in the corners
    flux = 10 ** (-0.4 * (shard.column("mag") - 25.44)) * 25
    assert np.allclose(shard.column("flux"), flux)
    corner = shard.arrays["images"][:, :8, :8]
    assert 0.8 < corner.std() / np.sqrt(60.0**2 * 50 + 134) < 1.3
    with pytest.raises(UserError, match="made for instrument 'circ', not 'nirc2'"):
        read_shard(tmp_path / "s" / "shard-00000.h5", instrument="nirc2")


def test_cli_simulate_and_bad_inputs(tmp_path, capsys):
    inst_file = tmp_path / "circ.yaml"
    inst_file.write_text(yaml.safe_dump(circular(npix=32).to_dict()))
    out = tmp_path / "sim"
    assert main(["psf", "simulate", "--instrument", str(inst_file), "--n", "3", "--seed", "2", "--out", str(out),
                 "--noise", "none", "--no-progress"]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["n"] == 3 and cfg["simulation"]["noise"] == "none"
    assert main(["psf", "simulate", "--instrument", "hubble", "--n", "3", "--out", str(out)]) == 2
    assert "unknown instrument 'hubble'" in capsys.readouterr().err
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(UserError, match="not a readable HDF5"):
        read_shard(bad)


def test_static_free_fraction(tmp_path):
    from astrolearn.psf.instruments import load_instrument
    from astrolearn.psf.simulate import DEFAULT_SIM, config_digest, draw_parameters, merge_config

    inst = load_instrument("nirc2")
    base = merge_config(DEFAULT_SIM, {})
    mixed = merge_config(DEFAULT_SIM, {"static_free_fraction": 0.4})
    a = draw_parameters(inst, base, 500, np.random.default_rng(3))
    b = draw_parameters(inst, mixed, 500, np.random.default_rng(3))
    stat = slice(7, 7 + inst.n_static)
    free = (b[:, stat] == 0).all(axis=1)
    assert 0.3 < free.mean() < 0.5 and not (a[:, stat] == 0).all(axis=1).any()
    # Same draws otherwise: the option only zeroes the static modes of the chosen PSFs.
    assert np.array_equal(np.delete(a, np.s_[stat], axis=1), np.delete(b, np.s_[stat], axis=1))
    assert np.array_equal(a[~free], b[~free])
    # Sets made before the option existed keep their digest (resume still matches them).
    legacy = {k: v for k, v in base.items() if k != "static_free_fraction"}
    assert config_digest(inst, base, 1) == config_digest(inst, legacy, 1)
    assert config_digest(inst, mixed, 1) != config_digest(inst, base, 1)
    for bad in (1.5, "half"):
        with pytest.raises(UserError, match=r"static-free-fraction must be a number in \[0, 1\]"):
            simulate(circular(npix=32), 2, 1, tmp_path / "x", {"static_free_fraction": bad}, progress=False)
    assert not (tmp_path / "x").exists()
