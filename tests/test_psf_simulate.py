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
