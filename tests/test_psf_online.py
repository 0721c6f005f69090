"""Online simulation training (psf train --online): streams, noise, resume, end to end."""

import json

import numpy as np
import pytest
import torch
import yaml

from astrolearn.cli import main
from astrolearn.config import read_yaml
from astrolearn.errors import UserError
from astrolearn.io.tables import read_csv
from astrolearn.psf.noise import add_noise, add_noise_torch
from astrolearn.psf.online import OnlineSimulation, train_psf_online
from astrolearn.psf.simulate import simulate
from psf_helpers import circular
from test_psf_learn import TINY_NET

SIM = {"static": False}


@pytest.fixture(scope="module")
def simulation():
    return OnlineSimulation(circular(npix=64), SIM, seed=3)


def test_batches_are_a_function_of_seed_step_and_rank(simulation):
    x, y = simulation.batch(5, 0, 8)
    assert x.shape == (8, 2, 16, 16) and y.shape == (8, 9) and x.dtype == torch.float32
    # A fresh simulation (no shared state) gives the same batch for the same (seed, step, rank) ...
    again = OnlineSimulation(circular(npix=64), SIM, seed=3).batch(5, 0, 8)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    # ... whatever was drawn before, and another one for another step, rank or seed.
    simulation.batch(4, 0, 8)
    assert torch.equal(simulation.batch(5, 0, 8)[0], x)
    others = [simulation.batch(6, 0, 8), simulation.batch(5, 1, 8), OnlineSimulation(circular(npix=64), SIM, 4).batch(5, 0, 8)]
    for other_x, other_y in others:
        assert not torch.allclose(other_y, y) and not torch.allclose(other_x, x)
    # Ranks draw disjoint streams: no truth row of rank 0's first steps appears on rank 1.
    rows = lambda rank: {tuple(np.round(simulation.batch(k, rank, 8)[1][:, 0].numpy(), 6)) for k in range(4)}  # noqa: E731
    assert not rows(0) & rows(1)
    # The validation set is fixed and drawn apart from the training stream.
    val_x, val_y = simulation.validation_set(12)
    assert torch.equal(val_y, simulation.validation_set(12)[1]) and not torch.allclose(val_y[:8], y)


def test_samples_are_those_of_a_shard(simulation):
    """A noiseless online sample is the PSF simulate_shard renders for the same truth."""
    from astrolearn.psf.learn import PsfTransform
    from astrolearn.psf.simulate import render

    sim = OnlineSimulation(circular(npix=64), {"static": False, "noise": "none"}, seed=1)
    images, params = sim.images((0, 0, 0), 4)
    expected = render(sim.model("cpu"), sim.instrument, params, sim.names)
    np.testing.assert_allclose(images.numpy(), expected, rtol=1e-5, atol=1e-3 * expected.max())
    x, _ = sim.sample((0, 0, 0), 4)
    np.testing.assert_allclose(x.numpy(), PsfTransform()(expected.astype(np.float32)), atol=1e-4)


def test_torch_noise_matches_add_noise_statistics():
    inst = circular(npix=64)
    levels = np.array([0.0, 50.0, 2_000.0, 1e5])  # e- per pixel: sky/read dominated to photon dominated
    images = np.repeat(levels[:, None, None], 200, axis=1).repeat(100, axis=2)  # (4, 200, 100)
    ref = add_noise(images, inst, np.random.default_rng(0))
    ours = add_noise_torch(torch.as_tensor(images, dtype=torch.float32), inst, torch.Generator().manual_seed(0))
    ours = ours.double().numpy()
    n = images[0].size
    for level, a, b in zip(levels, ref, ours):
        var = a.var()  # read + sky + photon variance
        assert abs(b.mean() - a.mean()) < 5 * np.sqrt(2 * var / n), level
        assert abs(b.var() / var - 1) < 5 * np.sqrt(2 / n), level
    assert np.isclose(ours[0].mean(), 0, atol=5 * np.sqrt(ours[0].var() / n))  # sky subtracted


def test_resumed_online_run_matches_an_uninterrupted_one(tmp_path):
    sim = {"static": False}
    config = {**TINY_NET, "optimizer": {"name": "sgd", "lr": 0.05}, "scheduler": {"name": "step", "step_size": 1}}
    run = lambda out, **kw: train_psf_online(circular(npix=64), sim, 5, config, tmp_path / out,  # noqa: E731
                                             samples_per_epoch=24, val_samples=8, **kw)
    run("direct", max_epochs=2)
    run("resumed", max_epochs=1)
    first = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    trainer = run("resumed", max_epochs=2, resume=True)
    assert trainer.current_epoch == 2
    resumed_log = read_csv(tmp_path / "resumed" / "csv" / "version_1" / "metrics.csv")
    assert [float(s) for s in resumed_log["samples_seen"] if s] == [48.0]  # the count goes on: 3 batches of 8 per epoch
    direct = torch.load(tmp_path / "direct" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    after = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not torch.allclose(first["model.net.0.0.weight"], after["model.net.0.0.weight"])
    for key in direct:
        torch.testing.assert_close(after[key], direct[key], rtol=1e-5, atol=1e-6)
    # Another simulation cannot continue the run: its stream would not be this one.
    with pytest.raises(UserError, match="simulation settings differ"):
        train_psf_online(circular(npix=64), sim, 6, config, tmp_path / "resumed", samples_per_epoch=24,
                         val_samples=8, max_epochs=3, resume=True)


def test_train_online_cli_then_predict(tmp_path, capsys):
    inst = circular(npix=64)
    inst_file = tmp_path / "circ.yaml"
    inst_file.write_text(yaml.safe_dump(inst.to_dict()))
    cfg = tmp_path / "net.yaml"
    cfg.write_text(yaml.safe_dump(TINY_NET))
    run = tmp_path / "run"
    args = ["psf", "train", "--online", "--instrument", str(inst_file), "--static", "none", "--noiseless-fraction",
            "0.25", "--samples-per-epoch", "32", "--val-samples", "16", "--seed", "7", "--config", str(cfg),
            "--out", str(run)]
    assert main(args) == 0
    simulation = read_yaml(run / "config.yaml")["simulation"]
    assert simulation["seed"] == 7 and simulation["samples_per_epoch"] == 32 and simulation["val_samples"] == 16
    assert simulation["noiseless_fraction"] == 0.25 and simulation["static"] is False
    assert simulation["instrument"]["npix"] == 64 and simulation["priors"]["r0_500nm"]["dist"] == "uniform"
    meta = json.loads((run / "psf_model.json").read_text())
    assert meta["training"]["data"] == "online" and meta["even_static_modes"] == []
    assert meta["noise"]["noiseless_fraction"] == 0.25 and meta["priors"] == simulation["priors"]
    metrics = read_csv(next((run / "csv").glob("version_*/metrics.csv")))
    seen = [float(s) for s in metrics["samples_seen"] if s]  # validation rows
    assert seen == [32.0, 64.0]  # 4 batches of 8 per epoch
    simulate(inst, 4, 2, tmp_path / "test", {"static": False}, progress=False)
    out = tmp_path / "pred.csv"
    assert main(["psf", "predict", str(tmp_path / "test" / "shard-00000.h5"), "--instrument", str(inst_file),
                 "--model", str(run), "--out", str(out)]) == 0
    table = read_csv(out)
    assert len(table["r0"]) == 4 and np.all(np.asarray(table["r0"]) > 0)
    capsys.readouterr()
    # Bad combinations: one line, exit 2, no run directory.
    for bad, message in ((["psf", "train", "--online", str(tmp_path / "test"), "--instrument", str(inst_file)], "no DATA"),
                         (["psf", "train", "--online"], "needs --instrument"),
                         (["psf", "train", str(tmp_path / "test"), "--seed", "3"], "--seed: only with --online"),
                         (["psf", "train"], "give the DATA directory"),
                         (["psf", "train", "--online", "--instrument", str(inst_file), "--noiseless-fraction", "2"],
                          "noiseless-fraction must be a number in")):
        assert main([*bad, "--config", str(cfg), "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not (tmp_path / "bad").exists()
