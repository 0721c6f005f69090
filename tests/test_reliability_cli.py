"""Redshift reliability verbs: run (estimate + reliability), predict, train, evaluate-reliability."""

import argparse
import csv

import numpy as np
import pytest

from astrolearn.errors import UserError
from astrolearn.redshift.pdf import ZGrid
from astrolearn.redshift.reliability.cli import register_verbs
from astrolearn.redshift.reliability.labels import SCHEMES

from test_reliability import GRID, make_model_dir


def run_cli(*argv):
    """Parse ``astrolearn redshift ARGV`` with the reliability verbs and run the handler."""
    parser = argparse.ArgumentParser(prog="astrolearn")
    sub = parser.add_subparsers(dest="command", required=True)
    verbs = sub.add_parser("redshift").add_subparsers(dest="verb", required=True)
    register_verbs(verbs)
    args = parser.parse_args(["redshift", *map(str, argv)])
    return args.func(args)


def read_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Six simulated spectra through ``run`` with an (untrained) model on a small grid."""
    from astrolearn.redshift.simulate import NispConfig, simulate

    root = tmp_path_factory.mktemp("chain")
    simulate(root / "sim", 6, seed=3, cfg=NispConfig(shard_size=4), progress=False)
    model = make_model_dir(root / "model", GRID, "3class")
    run_cli("run", root / "sim", "--model", model, "--out", root / "out", "--workers", "1", "--quiet")
    return root


def test_run_writes_reliability_in_input_order(chain):
    header, rows = read_rows(chain / "out" / "reliability.csv")
    ref_header, ref_rows = read_rows(chain / "out" / "redshifts.csv")
    assert header == ref_header + ["p_success", "p_confusion", "p_failure"]
    assert [r[: len(ref_header)] for r in rows] == ref_rows  # engine columns copied unchanged
    assert [int(r[0]) for r in rows] == list(range(6))  # input order
    p = np.array([[float(v) for v in r[-3:]] for r in rows])
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    # A second run reuses the finished estimate and refuses to replace the table.
    with pytest.raises(UserError, match="already exists"):
        run_cli("run", chain / "sim", "--model", chain / "model", "--out", chain / "out", "--quiet")


def test_predict_matches_run_and_refuses_another_grid(chain, tmp_path):
    out = tmp_path / "rel.csv"
    run_cli("predict", chain / "out", "--model", chain / "model", "--out", out)
    assert read_rows(out) == read_rows(chain / "out" / "reliability.csv")
    other = make_model_dir(tmp_path / "other", ZGrid(0.5, 2.5, 2e-3), "classical")
    with pytest.raises(UserError, match="rerun the estimate"):
        run_cli("predict", chain / "out", "--model", other, "--out", tmp_path / "x.csv")


def test_estimate_output_is_read_with_truth(chain):
    from astrolearn.redshift.reliability.dataset import open_estimates

    e = open_estimates(chain / "out")
    assert len(e) == 6 and e.log_pdf[0:6].shape == (6, GRID.size)
    assert e.candidates.shape == (6, 5) and np.array_equal(e.candidates[:, 0], e.table["z"])
    assert {"z_true", "halpha_flux", "halpha_snr"} <= set(e.truth)
    assert e.labels(SCHEMES["3class"]).shape == (6,)


def test_train_then_evaluate_on_toy_pdfs(tmp_path, capsys):
    """``redshift train`` learns, and every figure of ``evaluate-reliability`` is what its scores give."""
    from sklearn.metrics import roc_auc_score

    from astrolearn.redshift.reliability.dataset import from_arrays, write_training_shards
    from astrolearn.redshift.reliability.synthetic import toy_pdfs

    for name, n, seed in (("train", 320, 1), ("test", 160, 2), ("val", 160, 3)):
        d = toy_pdfs(n, GRID, seed=seed)
        e = from_arrays(d["log_pdf"], GRID, {k: d[k] for k in ("z", "z_err", "z_proba")}, d["candidates"],
                        {"z_true": d["z_true"], "halpha_snr": d["snr"]}, name)
        write_training_shards([e], tmp_path / name, shard_size=128)
    settings = ["--set", "trainer.accelerator=cpu", "--set", "trainer.devices=1", "--set", "data.num_workers=0",
                "--set", "data.batch_size=64", "--set", "trainer.log_every_n_steps=1"]
    run_cli("train", tmp_path / "train", "--out", tmp_path / "run", "--labels", "3class", "--max-epochs", "2", *settings)
    assert "stopped: reached max_epochs=2; best epoch" in capsys.readouterr().out
    with pytest.raises(UserError, match="--resume"):
        run_cli("train", tmp_path / "train", "--out", tmp_path / "run", "--max-epochs", "2", *settings)
    run_cli("evaluate-reliability", tmp_path / "test", "--model", tmp_path / "run", "--out", tmp_path / "eval",
            "--validation", tmp_path / "val")
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "descriptors + GBM" in report and "seed operating point" in report
    assert "Operating point chosen on validation data" in report and "CNN completeness >= redshift probability" in report
    for name in ("curves.csv", "confusion.csv", "binned.csv", "calibration.csv",
                 "purity_completeness_success.png", "confusion.png", "reliability_diagram.png", "vs_halpha_snr.png"):
        assert (tmp_path / "eval" / name).is_file(), name
    header, rows = read_rows(tmp_path / "eval" / "scores.csv")
    scores = {k: np.array(v) for k, v in zip(header, zip(*rows))}
    success = scores["label"] == "success"
    assert len(success) == 160 and 0 < success.sum() < 160
    # The ROC AUCs are those of the scores (and each trained method ranks better than chance).
    _, auc_rows = read_rows(tmp_path / "eval" / "auc.csv")
    auc = {(m, c): float(a) for m, c, a in auc_rows}
    for method, column in (("cnn", "cnn_p_success"), ("gbm", "gbm_p_success"), ("z_proba", "z_proba")):
        expected = roc_auc_score(success, scores[column].astype(float))
        assert auc[method, "success"] == pytest.approx(expected, abs=1e-6), method
    assert auc["gbm", "success"] > 0.6 and auc["cnn", "success"] > 0.55
    # Each operating point: keeping the scores >= its threshold gives its purity and completeness.
    header, rows = read_rows(tmp_path / "eval" / "thresholds.csv")
    assert len(rows) == (3 + 1 + 3) * 3  # CNN and GBM: 3 classes, redshift probability: success; 3 purities
    column = {"cnn": "cnn_p_success", "gbm": "gbm_p_success", "z_proba": "z_proba"}
    checked = 0
    for method, cls, _, threshold, completeness, purity in rows:
        if cls != "success" or threshold == "nan":
            continue
        kept = scores[column[method]].astype(float) >= float(threshold)
        assert success[kept].mean() == pytest.approx(float(purity)), (method, threshold)
        assert success[kept].sum() / success.sum() == pytest.approx(float(completeness)), (method, threshold)
        checked += 1
    assert checked >= 2
    # Thresholds chosen on the validation set select the test spectra as held_out.csv says.
    header, rows = read_rows(tmp_path / "eval" / "held_out.csv")
    for row in rows:
        r = dict(zip(header, row))
        if r["threshold"] == "nan":
            continue
        kept = scores[column[r["method"]]].astype(float) >= float(r["threshold"])
        assert success[kept].sum() / success.sum() == pytest.approx(float(r["test_completeness"]))
        assert float(r["test_completeness_lo"]) <= float(r["test_completeness"]) <= float(r["test_completeness_hi"])


def test_estimate_output_becomes_training_shards(chain, tmp_path):
    from astrolearn.io.shards import read_shard
    from astrolearn.redshift.reliability.dataset import SchemeTargets, open_estimates, open_training_data

    shards = open_training_data([chain / "out"], tmp_path / "data")
    assert open_training_data([chain / "out"], tmp_path / "data") == shards  # complete shards are kept
    assert open_training_data([tmp_path / "data"], tmp_path / "unused") == shards  # shards are used as they are
    shard = read_shard(shards[0])
    e = open_estimates(chain / "out")
    np.testing.assert_array_equal(shard.arrays["log_pdf"], e.log_pdf[0:6])
    assert shard.arrays["descriptors"].shape == (6, 13)
    assert SchemeTargets(SCHEMES["3class"])(shard.params, shard.names).tolist() == e.labels(SCHEMES["3class"]).tolist()


def test_training_data_record_follows_estimates_back_to_the_simulation_seed(chain, tmp_path):
    """A model's metadata names its data: per directory, the shards and the seed of the simulation
    behind them, through ``estimate``'s run.json or a shard's recorded source."""
    from astrolearn.io.shards import data_record, write_shard
    from astrolearn.redshift.reliability.dataset import open_training_data

    from astrolearn.cli import main

    assert main(["redshift", "estimate", str(chain / "sim"), "--out", str(tmp_path / "est"), "--workers", "1",
                 "--zrange", "0.5", "2.5", "--quiet"]) == 0
    shards = open_training_data([tmp_path / "est"], tmp_path / "data")
    assert data_record(shards) == [{"directory": str(tmp_path / "data"), "shards": 1, "seed": 3}]
    sims = sorted((chain / "sim").glob("shard-*.h5"))
    assert data_record(sims) == [{"directory": str(chain / "sim"), "shards": 2, "seed": 3}]
    # a shard made from one simulated shard (as benchmarks/redshift_reliability.py writes them)
    (tmp_path / "derived").mkdir()
    (tmp_path / "orphan").mkdir()
    write_shard(tmp_path / "derived" / "shard-00000.h5", {"x": np.zeros((1, 2))}, np.zeros((1, 1)), ["a"],
                {"source": f"{sims[0]}[0:4]"})
    orphan = tmp_path / "orphan" / "shard-00000.h5"
    write_shard(orphan, {"x": np.zeros((1, 2))}, np.zeros((1, 1)), ["a"], {})
    assert [r["seed"] for r in data_record([tmp_path / "derived" / "shard-00000.h5", orphan])] == [3, None]


def test_run_keeps_desi_size_target_ids(tmp_path):
    """18-digit DESI TARGETIDs (beyond float precision) go through run unchanged."""
    from astropy.io import fits

    ids = np.array([39632936152072660, 39632936152073654], dtype=np.int64)
    wave = np.linspace(12000.0, 18000.0, 600)
    rng = np.random.default_rng(0)
    flux = (1e-17 + rng.normal(0, 1e-18, (2, wave.size))).astype(np.float32)
    batch = tmp_path / "batch.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(wave, name="WAVELENGTH"), fits.ImageHDU(flux, name="FLUX"),
                  fits.ImageHDU(np.full_like(flux, 1e36), name="IVAR"),
                  fits.BinTableHDU.from_columns([fits.Column(name="TARGETID", format="K", array=ids)], name="FIBERMAP")
                  ]).writeto(batch)
    model = make_model_dir(tmp_path / "model", GRID, "classical")
    run_cli("run", batch, "--model", model, "--out", tmp_path / "out", "--workers", "1", "--quiet")
    _, rows = read_rows(tmp_path / "out" / "reliability.csv")
    assert [int(r[0]) for r in rows] == list(ids)
