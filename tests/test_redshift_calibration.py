"""Calibration of the redshift probability: the map, its fit, the shipped file, the diagram helpers."""

import json

import numpy as np
import pytest

from astrolearn.errors import UserError
from astrolearn.redshift.calibration import (
    CALIBRATION_FILE,
    ProbaCalibration,
    calibration_table,
    ece_interval,
    fit_proba_calibration,
    load_calibration,
)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def tempered_sample(n, temperature, bias, seed=0):
    """Raw probabilities whose calibrated values are sigmoid(bias + logit(raw) / temperature), with labels."""
    rng = np.random.default_rng(seed)
    true_logodds = rng.uniform(-5, 5, n)
    success = rng.random(n) < sigmoid(true_logodds)
    return sigmoid(temperature * (true_logodds - bias)), success


def test_fit_recovers_a_known_temperature_and_bias():
    raw, success = tempered_sample(40000, temperature=2.5, bias=-1.0)
    cal = fit_proba_calibration(raw, success)
    assert cal.temperature == pytest.approx(2.5, rel=0.05)
    assert cal.bias == pytest.approx(-1.0, abs=0.08)
    # the piecewise map contains temperature scaling: with knots it finds the same map
    pw = fit_proba_calibration(raw, success, knots=(-2.0, 0.0, 2.0))
    grid = np.linspace(1e-4, 1 - 1e-4, 999)
    assert np.max(np.abs(pw(grid) - sigmoid(-1.0 + np.log(grid / (1 - grid)) / 2.5))) < 0.02


@pytest.mark.parametrize("cal", [ProbaCalibration(-0.8, (1.1, 0.0, 1.5, 0.85), (-2.0, 0.0, 2.0)),
                                 ProbaCalibration(0.3, (0.5,)), load_calibration()], ids=["knots", "temp", "shipped"])
def test_map_is_monotonic_and_in_unit_interval(cal):
    p = np.r_[0.0, 1e-300, np.linspace(0, 1, 2001), 1 - 1e-16, 1.0]
    p.sort()
    q = cal(p)
    assert np.all((q >= 0) & (q <= 1))
    assert np.all(np.diff(q) >= 0)
    assert np.isnan(cal(np.array([np.nan, 0.5]))[0])


def test_shipped_calibration_loads_with_its_provenance():
    cal = load_calibration()
    meta = json.loads(CALIBRATION_FILE.read_text())["meta"]
    assert cal.meta == meta
    assert meta["seed"] not in (202, *range(101, 108)) and meta["n"] >= 5000 and meta["commit"]
    # it lowers the engine's over-confident mid-range probabilities
    assert cal(0.75) < 0.7


@pytest.mark.parametrize("text,problem", [("{", "not a z_proba calibration"),
                                          ('{"bias": 0, "slopes": [-1]}', "slopes must be >= 0"),
                                          ('{"bias": 0, "slopes": [1, 1], "knots": []}', "2 slopes for 0 knots")])
def test_bad_calibration_file_is_one_line_error(tmp_path, text, problem):
    path = tmp_path / "cal.json"
    path.write_text(text)
    with pytest.raises(UserError, match=problem) as err:
        load_calibration(path)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="no such calibration file"):
        load_calibration(tmp_path / "missing.json")


def test_table_and_ece_of_a_calibrated_sample():
    rng = np.random.default_rng(1)
    p = rng.random(20000)
    success = rng.random(20000) < p
    rows = calibration_table(p, success)
    assert [r["lo"] for r in rows] == pytest.approx(np.arange(10) / 10)
    assert sum(r["n"] for r in rows) == 20000
    assert all(r["tested"] and r["within"] and r["obs_lo"] < r["observed"] < r["obs_hi"] for r in rows)
    ece, lo, hi = ece_interval(p, success, n_boot=200)
    assert lo <= ece <= hi < 0.03
    # a biased prediction is seen
    ece_biased, lo_b, _ = ece_interval(np.clip(p + 0.2, 0, 1), success, n_boot=200)
    assert lo_b > hi and ece_biased > 0.1
