"""Redshift reliability: labels, zPDF descriptors, purity/completeness, calibration, model files."""

import math

import numpy as np
import pytest
import torch

from astrolearn.errors import UserError
from astrolearn.redshift.lines import alias_ratios
from astrolearn.redshift.pdf import ZGrid, normalise_log_pdf
from astrolearn.redshift.reliability.classifier import (
    Calibration,
    PACKAGED_DIR,
    PdfTransform,
    ReliabilityModel,
    check_grid,
    fit_calibration,
    model_metadata,
    nll,
    write_metadata,
)
from astrolearn.redshift.reliability.curves import (
    bootstrap_selection,
    purity_completeness,
    reliability_diagram,
    roc_auc,
    selection,
)
from astrolearn.redshift.reliability.descriptors import DESCRIPTOR_NAMES, zpdf_descriptors
from astrolearn.redshift.reliability.labels import SCHEMES, get_scheme

GRID = ZGrid(0.5, 2.5, 1e-3)  # 848 points: small and fast
FINE = ZGrid(0.5, 2.5, 1e-4)  # the default step: peak windows span several cells


def gaussian_log_pdf(grid, mean, sigma):
    return normalise_log_pdf(-0.5 * ((grid.z - mean) / sigma) ** 2, grid.z)


# ---- labels ---------------------------------------------------------------------------------
def test_labels_on_hand_made_cases():
    halpha_as_oiii = 2.0 * alias_ratios()["Halpha->OIII5008"] - 1  # z_true 1: Halpha read as [OIII]
    z_true = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 1.0])
    z_best = np.array([1.0059, 1.0061, halpha_as_oiii, 0.7, 2.2, 0.5, np.nan])
    secondary = np.full((7, 2), np.nan)
    secondary[3] = [2.9, 1.001]  # the truth is the PDF's third peak
    # |dz|/(1+z) = 0.00295 (success) and 0.00305 (failure): the 0.003 boundary.
    assert SCHEMES["classical"].labels(z_best, z_true, secondary).tolist() == [0, 1, 1, 1, 1, 0, 1]
    # Euclid: z_true = 0.5 is outside 0.9 < z < 1.8, so even an exact redshift is a failure.
    assert SCHEMES["euclid"].labels(z_best, z_true, secondary).tolist() == [0, 1, 1, 1, 1, 1, 1]
    # 3 classes (0 success, 1 confusion, 2 failure): the [OIII] alias and the secondary-peak truth
    # are confusions, and so is the failure just past 0.003: (1 + z_best) / (1 + z_true) = 1.00305
    # is Halpha taken for [NII] 6585 (ratio 1.00315).
    assert SCHEMES["3class"].labels(z_best, z_true, secondary).tolist() == [0, 1, 1, 1, 2, 0, 2]
    # Without the secondary peaks, only the known aliases are confusions.
    assert SCHEMES["3class"].labels(z_best, z_true).tolist() == [0, 1, 1, 2, 2, 0, 2]


def test_label_scheme_options_and_errors():
    wide = get_scheme("classical", tolerance=0.01)
    assert wide.labels(np.array([1.015]), np.array([1.0])).tolist() == [0]
    assert get_scheme("euclid", window=(0.4, 0.6)).labels(np.array([0.5]), np.array([0.5])).tolist() == [0]
    assert get_scheme("3class").to_dict()["classes"] == ["success", "confusion", "failure"]
    with pytest.raises(UserError, match="unknown label scheme"):
        get_scheme("4class")
    with pytest.raises(UserError, match="ZMIN < ZMAX"):
        get_scheme("euclid", window=(1.8, 0.9))


# ---- descriptors ----------------------------------------------------------------------------
def test_descriptors_of_a_gaussian_pdf():
    sigma = 0.01
    d = dict(zip(DESCRIPTOR_NAMES, zpdf_descriptors(gaussian_log_pdf(FINE, 1.2, sigma)[None], FINE)[0]))
    assert d["mean"] == pytest.approx(1.2, abs=1e-6)
    assert d["std"] == pytest.approx(sigma, rel=2e-3)
    assert d["skewness"] == pytest.approx(0.0, abs=0.01)
    assert d["kurtosis"] == pytest.approx(0.0, abs=0.02)
    assert d["z_map"] == pytest.approx(1.2, abs=FINE.step * 2.2)
    assert d["peak_height"] == pytest.approx(1 / (sigma * math.sqrt(2 * math.pi)), rel=2e-3)
    # 95 % highest-density region of a Gaussian: +-1.96 sigma, all of it around the mode.
    assert d["cr95_width"] == pytest.approx(2 * 1.96 * sigma, abs=2 * FINE.step * 2.2)
    assert d["cr95_mass"] == pytest.approx(0.95, abs=0.01)
    # Mass within +-0.001 of the mode (itself within a grid step of the mean).
    assert d["mass_peak"] == pytest.approx(math.erf(0.001 / (math.sqrt(2) * sigma)), rel=0.01)
    assert (d["n_peaks"], d["peak_distance"], d["peak_ratio"], d["mass_second"]) == (1, 0, 0, 0)


def test_descriptors_of_two_peaks():
    z = FINE.z
    log_pdf = normalise_log_pdf(np.logaddexp(-0.5 * ((z - 1.0) / 0.004) ** 2,
                                             math.log(0.25) - 0.5 * ((z - 1.6) / 0.004) ** 2), z)
    d = dict(zip(DESCRIPTOR_NAMES, zpdf_descriptors(log_pdf[None], FINE)[0]))
    assert d["n_peaks"] == 2
    assert d["peak_distance"] == pytest.approx(0.6, abs=0.003)
    assert d["peak_ratio"] == pytest.approx(0.25, rel=0.02)
    assert d["mean"] == pytest.approx(0.8 * 1.0 + 0.2 * 1.6, abs=1e-3)  # masses 0.8 and 0.2
    # 95 % region: density level L with 0.8 erf(x1 / sqrt 2) + 0.2 erf(x2 / sqrt 2) = 0.95, where
    # +-x_k sigma are the points of peak k at L: x_k = sqrt(2 ln(m_k / L)) in units of its mode.
    from scipy.optimize import brentq

    half = lambda m, log_level: math.sqrt(max(2 * (math.log(m) - log_level), 0.0))  # noqa: E731
    mass = lambda ll: sum(m * math.erf(half(m, ll) / math.sqrt(2)) for m in (0.8, 0.2))  # noqa: E731
    ll = brentq(lambda ll: mass(ll) - 0.95, math.log(1e-6), math.log(0.2))
    assert d["cr95_mass"] == pytest.approx(0.8 * math.erf(half(0.8, ll) / math.sqrt(2)), abs=2e-3)
    assert d["cr95_width"] == pytest.approx(2 * 0.004 * (half(0.8, ll) + half(0.2, ll)), rel=0.01)
    assert d["mass_second"] / d["mass_peak"] == pytest.approx(0.25, rel=0.02)


def test_descriptors_of_an_empty_pdf_are_nan():
    assert np.isnan(zpdf_descriptors(np.full((1, GRID.size), -np.inf), GRID)).all()


# ---- purity / completeness ------------------------------------------------------------------
def test_purity_completeness_on_a_hand_made_example():
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5, np.nan])
    success = np.array([1, 1, 0, 1, 0, 1], dtype=bool)  # 4 successes, one never selectable
    pc = purity_completeness(score, success)
    assert pc.threshold.tolist() == [0.9, 0.8, 0.7, 0.6, 0.5]
    np.testing.assert_allclose(pc.purity, [1, 1, 2 / 3, 3 / 4, 3 / 5])
    np.testing.assert_allclose(pc.completeness, [1 / 4, 2 / 4, 2 / 4, 3 / 4, 3 / 4])
    assert pc.at_purity(0.8) == (0.8, 0.5, 1.0)
    assert pc.at_purity(0.7) == (0.6, 0.75, 0.75)
    assert math.isnan(pc.at_purity(1.01)[0])
    assert pc.meets(0.7, 0.6) and not pc.meets(0.8, 0.6)
    # Tied scores are selected together.
    tied = purity_completeness(np.array([1.0, 1.0, 0.5]), np.array([True, False, True]))
    np.testing.assert_allclose(tied.purity, [0.5, 2 / 3])


def test_fixed_thresholds_with_paired_bootstrap_intervals():
    success = np.array([1, 1, 0, 1, 0, 0, 1, 0], bool)
    good = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.55, 0.1])
    assert selection(good, success, 0.6) == (3 / 4, 3 / 4)
    assert np.isnan(selection(good, success, np.nan)[0]) and selection(good, success, np.nan)[1] == 0
    rng = np.random.default_rng(1)
    y = rng.random(4000) < 0.4
    better, worse = y + rng.normal(0, 0.5, y.size), y + rng.normal(0, 1.5, y.size)
    out = bootstrap_selection({"a": better, "b": worse}, y, {"a": 0.5, "b": 0.5}, n_boot=300)
    value, lo, hi = out["a"]["completeness"]
    assert lo < value < hi and hi - lo < 0.05  # ~ 2 x 1.96 sqrt(p (1 - p) / 1600)
    assert value == selection(better, y, 0.5)[1]
    d, dlo, dhi = out["difference"]["a", "b"]
    assert d == pytest.approx(value - out["b"]["completeness"][0]) and dlo < d < dhi
    assert out["a"]["purity"][0] > out["b"]["purity"][0]


def test_roc_auc_and_reliability_diagram():
    # Successes 0.9, 0.8, 0.6 against failures 0.7, 0.5: 5 of the 6 pairs are ordered.
    assert roc_auc([0.9, 0.8, 0.7, 0.6, 0.5], [1, 1, 0, 1, 0]) == pytest.approx(5 / 6)
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5
    rd = reliability_diagram(np.array([0.05, 0.05, 0.95, 0.95]), np.array([0, 1, 1, 1]), n_bins=10)
    np.testing.assert_allclose(rd.observed, [0.5, 1.0])
    assert rd.count.tolist() == [2, 2]
    assert rd.ece == pytest.approx((2 * 0.45 + 2 * 0.05) / 4)


# ---- calibration ----------------------------------------------------------------------------
def test_calibration_reduces_nll_of_an_overconfident_biased_toy():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, (4000, 3))
    p = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    labels = (rng.uniform(size=(4000, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    # Over-confident (x3) and shifted towards class 2, as class-weighted training would do.
    logits = 3 * true_logits + np.array([0.0, 0.0, 2.0])
    cal = fit_calibration(logits, labels)
    assert nll(cal(logits), labels) < nll(Calibration(1.0, np.zeros(3))(logits), labels) - 0.3
    assert nll(cal(logits), labels) == pytest.approx(nll(p, labels), abs=0.02)
    assert cal.scale == pytest.approx(1 / 3, rel=0.1)
    assert cal.bias[2] - cal.bias[1] == pytest.approx(-2 / 3, abs=0.15)
    # With 2 classes, calibration keeps the ranking: purity/completeness curves do not change.
    two = fit_calibration(logits[:, :2], (labels > 0).astype(int))
    raw = Calibration(1.0, np.zeros(2))(logits[:, :2])[:, 0]
    assert np.array_equal(np.argsort(two(logits[:, :2])[:, 0], kind="stable"), np.argsort(raw, kind="stable"))


# ---- network input and model files ----------------------------------------------------------
def test_pdf_transform_channels():
    log_pdf = np.stack([gaussian_log_pdf(GRID, 1.0, 0.01), np.full(GRID.size, -np.inf)]).astype(np.float32)
    x = PdfTransform(GRID)(log_pdf)
    assert x.shape == (2, 2, GRID.size) and x.dtype == np.float32
    assert x[0, 0].sum() == pytest.approx(1.0, rel=1e-5)  # cell masses
    assert x[0, 1].max() == pytest.approx(1.0) and x[0, 1].min() == 0.0  # clipped log, peak at 1
    assert not x[1].any()  # no data: all zeros
    assert PdfTransform(GRID, ["log"])(log_pdf[0]).shape == (1, GRID.size)  # one sample, as the loader gives
    # Pooling by 4 (848 = 4 x 212): the maxima of each cell (the PDF times the cell width).
    pooled = PdfTransform(GRID, pool=4)(log_pdf)
    assert pooled.shape == (2, 2, 212)
    np.testing.assert_allclose(pooled[0, 1], x[0, 1].reshape(212, 4).max(axis=1), atol=1e-6)
    np.testing.assert_allclose(pooled[0, 0], 4 * x[0, 0].reshape(212, 4).max(axis=1), rtol=3e-3, atol=1e-30)
    # Broad PDF (nearly flat over a cell): the cells' values are their probabilities, from above.
    assert 1.0 <= PdfTransform(GRID, pool=4)(gaussian_log_pdf(GRID, 1.2, 0.2))[0].sum() < 1.02
    assert PdfTransform(GRID, pool=5)(log_pdf).shape[-1] == 170  # the last cell pools 3 points
    with pytest.raises(UserError, match="channels"):
        PdfTransform(GRID, ["pdf", "pdf"])


TINY_MODEL = {"dim": 1, "blocks": [{"type": "pool", "op": "max", "size": 4},
                                   {"type": "conv", "filters": 4, "kernel": 5, "stride": 2},
                                   {"type": "dense", "units": 8}], "head": {"type": "classification"}}


def make_model_dir(path, grid=GRID, scheme="classical", seed=0):
    """An (untrained) reliability model directory, written without Lightning."""
    from astrolearn.training import resolve_config
    from astrolearn.training.tasks import ClassificationModel

    scheme = get_scheme(scheme)
    config = resolve_config({"model": TINY_MODEL, "seed": seed})
    net = ClassificationModel(config, (2, grid.size), scheme.classes)
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": {"config": config, "input_shape": (2, grid.size), "names": list(scheme.classes)},
                "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}, "epoch": 2},
               path / "checkpoints" / "best-epoch=002.ckpt")
    write_metadata(path, model_metadata(grid, scheme, ["pdf", "log"], 1, Calibration(0.5, np.zeros(scheme.n_classes))))
    return path


def test_folded_batchnorm_computes_the_same_function():
    from astrolearn.nn import fold_batchnorm
    from astrolearn.training import resolve_config
    from astrolearn.training.tasks import ClassificationModel

    net = ClassificationModel(resolve_config({"model": TINY_MODEL}), (2, GRID.size), ["a", "b"]).net
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)):
        for t in (bn.running_mean, bn.weight, bn.bias):
            torch.nn.init.uniform_(t, -1, 1)
        torch.nn.init.uniform_(bn.running_var, 0.5, 2)
    x = torch.from_numpy(PdfTransform(GRID)(np.stack([gaussian_log_pdf(GRID, 1.1, 0.02)] * 3)))
    with torch.inference_mode():
        before = net.eval()(x)
        after = fold_batchnorm(net)(x)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in net.modules())
    np.testing.assert_allclose(after.numpy(), before.numpy(), rtol=1e-4, atol=1e-5)


def test_model_refuses_pdfs_on_another_grid(tmp_path):
    model = ReliabilityModel(make_model_dir(tmp_path / "m", scheme="3class"))
    log_pdf = np.stack([gaussian_log_pdf(GRID, z, 0.01) for z in (0.8, 1.5)])
    probs = model.predict(log_pdf, GRID)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1)
    assert list(model.columns(probs)) == ["p_success", "p_confusion", "p_failure"]
    other = ZGrid(0.5, 2.5, 1e-3, "lin")
    with pytest.raises(UserError, match=r"trained on z 0.5-2.5, step 0.001 \(log\)"):
        model.predict(np.zeros((1, other.size)), other, "x.h5")
    with pytest.raises(UserError, match="rerun the estimate"):
        check_grid(GRID, ZGrid(0.5, 2.5, 2e-3), "x.h5")
    check_grid(GRID, ZGrid(0.5, 2.5, 1e-3 * (1 + 1e-9)), "x.h5")  # rounding in stored metadata


def test_unknown_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="neither a reliability model directory .* nor a shipped model"):
        ReliabilityModel(tmp_path / "nothing")


def test_shipped_classifiers_use_the_engine_grid_and_rank_pdfs():
    from astrolearn.redshift.engine import EngineConfig

    grid = EngineConfig().grid
    lone = gaussian_log_pdf(grid, 1.4, 0.002)  # one narrow peak holds all the mass
    split = np.logaddexp.reduce([gaussian_log_pdf(grid, z, 0.002) for z in (0.7, 1.4, 2.1)]) - math.log(3)
    for name in ("classical", "3class"):
        model = ReliabilityModel(name)
        assert all(f.stat().st_size <= 5e6 for f in (PACKAGED_DIR / name).rglob("*.*"))
        training = model.meta["training"]  # what was trained, and which epoch ships (issue 19)
        assert training["n_train"] > 0 and 0 <= training["epoch_kept"] < training["epochs_trained"]
        assert all(d["seed"] is not None for d in training["data"]), training["data"]  # the data it was made from
        assert list((PACKAGED_DIR / name / "checkpoints").glob(f"{training['kept']}-epoch={training['epoch_kept']:03d}.ckpt"))
        probs = model.predict(np.stack([lone, split]), grid)
        assert probs[0, 0] > 0.5 and probs[0, 0] > probs[1, 0] + 0.1, (name, probs)
        # Its descriptors + GBM baseline ranks them the same way.
        from astrolearn.redshift.reliability.train import load_baseline

        baseline = load_baseline(model.baseline_file)
        assert baseline["classes"] == model.classes and baseline["grid"] == grid.meta()
        gbm = baseline["model"].predict_proba(zpdf_descriptors(np.stack([lone, split]), grid))
        assert gbm[0, 0] > gbm[1, 0], (name, gbm)


def test_export_ships_the_kept_epoch_and_the_baseline(tmp_path):
    import pickle

    from astrolearn.redshift.reliability.classifier import BASELINE_FILE, export_model
    from astrolearn.redshift.reliability.train import load_baseline

    run = make_model_dir(tmp_path / "run")  # as a training run holds them: best and last epochs
    last = torch.load(run / "checkpoints" / "best-epoch=002.ckpt", weights_only=True)
    torch.save({**last, "epoch": 4, "optimizer_states": [{}]}, run / "checkpoints" / "last.ckpt")
    with open(run / BASELINE_FILE, "wb") as f:
        pickle.dump({"classes": ["success", "failure"], "sklearn_version": "0.0"}, f)
    shipped = export_model(run, tmp_path / "shipped")
    assert [p.name for p in (shipped / "checkpoints").iterdir()] == ["best-epoch=002.ckpt"]
    assert "optimizer_states" not in torch.load(shipped / "checkpoints" / "best-epoch=002.ckpt", weights_only=True)
    training = ReliabilityModel(shipped).meta["training"]
    assert (training["epochs_trained"], training["epoch_kept"], training["kept"]) == (5, 2, "best")
    assert [p.name for p in (export_model(run, shipped, "last") / "checkpoints").iterdir()] == ["last-epoch=004.ckpt"]
    with pytest.warns(UserWarning, match="made with scikit-learn 0.0"):
        assert load_baseline(shipped / BASELINE_FILE)["classes"] == ["success", "failure"]
        assert load_baseline(ReliabilityModel(run).baseline_file) is not None
    assert load_baseline(tmp_path / "none.pkl", missing_ok=True) is None
    with pytest.raises(UserError, match="no such baseline file"):
        load_baseline(tmp_path / "none.pkl")
