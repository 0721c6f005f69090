"""Calibrated redshift probability (issue 14, section 3): fit the map of ``z_proba``, test it.

    python benchmarks/redshift_calibration.py [--n-fit 15000] [--n-test 15000] [--knots -2 0 2] [--ship]

Stages (each reuses what ``--work``, default ``runs/calibration``, holds when the code it depends on
has not changed since it was made):

1. simulate NISP spectra and estimate their redshifts with the CLI defaults: the fit set (seed
   3001) and the test set (seed 3002); neither is a seed of ``benchmarks/redshift_reliability.py``
   (101-107 training, 202 test);
2. fit :class:`~astrolearn.redshift.calibration.ProbaCalibration` (knots ``--knots`` in log-odds)
   and, for comparison, temperature scaling with a bias (no knots) on the fit set;
3. on the test set, the reliability diagram (10 bins) of the raw ``z_proba``, of both maps and
   of the shipped ``classical`` CNN's ``p_success``: per bin n, mean prediction, observed success
   rate with its 95 % Wilson interval; the ECE with a 95 % bootstrap interval; the goal "every bin
   with >= 50 spectra within 0.05 of its observed rate" met or not;
4. the two real DESI coadds (``../shared/data/desi``, ``--zrange 0 4`` as in
   ``tests/test_redshift_desi.py``): z, z_proba, z_proba_cal, redrock's redshift.

Writes ``<work>/calibration.md`` (every row printed), ``<work>/reliability_diagram.png`` and the
fitted map ``<work>/zproba_calibration.json``; ``--ship`` also copies that map into the package
(``astrolearn/redshift/data/zproba_calibration.json``), with the commit, seeds and sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measured import CLI, ENGINE, RELIABILITY, SIMULATOR, made_by, reusable  # noqa: E402
from timing import commit, machine, results_marker  # noqa: E402

#: The code the printed result measures (benchmarks/check_results.py), the shipped map included.
MEASURED = [*ENGINE, *SIMULATOR, *CLI, *RELIABILITY, "benchmarks/redshift_calibration.py"]

ROOT = Path(__file__).resolve().parents[1]
SEEDS = {"fit": 3001, "test": 3002}
TOL = 0.003
DESI = ("4-80613-thru20210324", "special-dark-27247")


def run_cli(*argv: str) -> None:
    from astrolearn.cli import main

    if main(list(argv)) != 0:
        raise SystemExit(f"failed: astrolearn {' '.join(argv)}")


def data(work: Path, split: str, n: int) -> Path:
    """Simulated set ``split`` estimated with the CLI defaults (reused when made by this code)."""
    sim, est = work / "sim" / split, work / "est" / split
    if not reusable(sim, SIMULATOR):
        run_cli("redshift", "simulate", "--n", str(n), "--seed", str(SEEDS[split]), "--out", str(sim),
                "--no-progress", "--overwrite")
        made_by(sim, SIMULATOR)
    if not reusable(est, [*SIMULATOR, *ENGINE, *CLI]):
        run_cli("redshift", "estimate", str(sim), "--out", str(est), "--no-progress", "--overwrite")
        made_by(est, [*SIMULATOR, *ENGINE, *CLI])
    return est


def labelled(est: Path) -> tuple[np.ndarray, np.ndarray]:
    """Raw ``z_proba`` and success (|z - z_true| < 0.003 (1 + z_true)) of an estimate directory."""
    from astrolearn.redshift.evaluate import load_results

    res = load_results(est)
    zt = res["truth"]["z"]
    return res["z_proba"], np.isfinite(res["z"]) & (np.abs(res["z"] - zt) / (1 + zt) < TOL)


def p_success(est: Path) -> np.ndarray:
    """The shipped ``classical`` CNN's calibrated probability of success."""
    from astrolearn.redshift.reliability.classifier import ReliabilityModel
    from astrolearn.redshift.reliability.dataset import read_engine_output

    model = ReliabilityModel("classical")
    e = read_engine_output(est)
    return model.predict(e.log_pdf, e.grid, e.source)[:, model.classes.index("success")]


def desi_rows(work: Path, shared: Path, cal) -> list[dict]:
    """The engine on both DESI coadds, against redrock's redshift (the reference, not a truth)."""
    from astropy.io import fits

    rows = []
    for name in DESI:
        coadd = shared / f"coadd-{name}.fits"
        if not coadd.is_file():
            continue
        out = work / "desi" / name
        if not reusable(out, [*ENGINE, *CLI]):
            run_cli("redshift", "estimate", str(coadd), "--zrange", "0", "4", "--out", str(out), "--no-progress",
                    "--overwrite")
            made_by(out, [*ENGINE, *CLI])
        head, first = (line.split(",") for line in (out / "redshifts.csv").read_text().splitlines()[:2])
        row = dict(zip(head, first))
        ref = fits.getdata(shared / f"redrock-{name}.fits", "REDSHIFTS")[0]
        z, zr = float(row["z"]), float(ref["Z"])
        rows.append({"coadd": name, "z": z, "z_redrock": zr, "agrees": abs(z - zr) < TOL * (1 + zr),
                     "z_proba": float(row["z_proba"]), "z_proba_cal": float(cal(float(row["z_proba"])))})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "calibration")
    p.add_argument("--n-fit", type=int, default=15000)
    p.add_argument("--n-test", type=int, default=15000)
    p.add_argument("--knots", type=float, nargs="*", default=[-2.0, 0.0, 2.0], help="knots in log-odds of z_proba")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the ECE")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data" / "desi")
    p.add_argument("--ship", action="store_true", help="write the fitted map into the package")
    args = p.parse_args(argv)

    from astrolearn.redshift.calibration import (
        BIN_TOLERANCE,
        CALIBRATION_FILE,
        MIN_BIN_COUNT,
        calibration_table,
        ece_interval,
        fit_proba_calibration,
        load_calibration,
    )

    t0 = time.perf_counter()
    fit_p, fit_ok = labelled(data(args.work, "fit", args.n_fit))
    test_est = data(args.work, "test", args.n_test)
    test_p, test_ok = labelled(test_est)
    t_data = time.perf_counter() - t0
    cal = fit_proba_calibration(fit_p, fit_ok, args.knots)
    temp = fit_proba_calibration(fit_p, fit_ok)
    meta = {"fitted_on": "simulated NISP spectra (astrolearn redshift simulate defaults), estimated with the "
                         "astrolearn redshift estimate defaults (grid z 0.01-3.0, step 1e-4 in ln(1+z))",
            "success": f"|z - z_true| < {TOL} (1 + z_true)", "seed": SEEDS["fit"], "n": int(np.isfinite(fit_p).sum()),
            "success_rate": float(fit_ok.mean()), "test_seed": SEEDS["test"], "n_test": int(np.isfinite(test_p).sum()),
            "commit": commit(), "command": "python benchmarks/redshift_calibration.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d", time.gmtime())}
    cal = replace(cal, meta=meta)
    fitted = args.work / "zproba_calibration.json"
    fitted.write_text(json.dumps(cal.to_dict(), indent=1) + "\n")
    if args.ship:
        CALIBRATION_FILE.write_text(json.dumps(cal.to_dict(), indent=1) + "\n")

    shipped = load_calibration()
    scores = {"z_proba (raw)": test_p, "z_proba_cal (the shipped map)": shipped(test_p),
              "map refitted here (the shipped form)": cal(test_p),
              "temperature + bias only": temp(test_p), "p_success (classical CNN)": p_success(test_est)}
    lines = [results_marker("redshift_calibration", MEASURED), f"{machine()}.", "",
             f"Test set: seed {SEEDS['test']}, {len(test_p)} simulated spectra, success rate {test_ok.mean():.4f}; "
             f"fit set: seed {SEEDS['fit']}, {len(fit_p)} spectra, success rate {fit_ok.mean():.4f}. "
             f"Commit {meta['commit']}; data stage {t_data:.0f} s.", "",
             f"Shipped map: knots {list(shipped.knots)}, bias {shipped.bias:.4f}, slopes "
             f"{[round(s, 4) for s in shipped.slopes]} (commit {shipped.meta.get('commit')}). "
             f"Map {'fitted and shipped' if args.ship else 'refitted here (not shipped)'}: knots {list(cal.knots)} (log-odds), bias {cal.bias:.4f}, slopes "
             f"{[round(s, 4) for s in cal.slopes]}; temperature + bias only: T = {temp.temperature:.4f}, "
             f"bias {temp.bias:.4f}.", "",
             f"| score | ECE [95 % bootstrap] | bins with n >= {MIN_BIN_COUNT} | within {BIN_TOLERANCE} | goal |",
             "|---|---|---:|---:|---|"]
    tables = {}
    for name, s in scores.items():
        tables[name] = rows = calibration_table(s, test_ok)
        ece, lo, hi = ece_interval(s, test_ok, n_boot=args.n_boot)
        tested = [r for r in rows if r["tested"]]
        ok = sum(r["within"] for r in tested)
        lines.append(f"| {name} | {ece:.4f} [{lo:.4f}, {hi:.4f}] | {len(tested)} | {ok} | "
                     f"{'met' if ok == len(tested) else 'not met'} |")
    for name, rows in tables.items():
        lines += ["", f"{name}, test set, per bin:", "",
                  "| bin | n | mean predicted | observed [95 % Wilson] | observed - predicted |",
                  "|---|---:|---:|---|---:|"]
        lines += [f"| {r['lo']:.1f}-{r['hi']:.1f} | {r['n']} | {r['predicted']:.3f} | {r['observed']:.3f} "
                  f"[{r['obs_lo']:.3f}, {r['obs_hi']:.3f}] | {r['observed'] - r['predicted']:+.3f}"
                  f"{'' if r['within'] or not r['tested'] else ' (off)'} |" for r in rows]
    desi = desi_rows(args.work, args.shared, cal)
    if desi:
        lines += ["", "Real DESI coadds (engine --zrange 0 4; redrock as the reference, not a truth):", "",
                  "| coadd | z | z_redrock | agrees | z_proba | z_proba_cal |", "|---|---:|---:|---|---:|---:|"]
        lines += [f"| {r['coadd']} | {r['z']:.5f} | {r['z_redrock']:.5f} | {'yes' if r['agrees'] else 'no'} | "
                  f"{r['z_proba']:.4f} | {r['z_proba_cal']:.4f} |" for r in desi]
    text = "\n".join(lines) + "\n"
    (args.work / "calibration.md").write_text(text)
    plot(tables, args.work / "reliability_diagram.png", len(test_p))
    print(text)
    return 0


def plot(tables: dict, path: Path, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for name, rows in tables.items():
        x = np.array([r["predicted"] for r in rows])
        y = np.array([r["observed"] for r in rows])
        err = np.array([[r["observed"] - r["obs_lo"] for r in rows], [r["obs_hi"] - r["observed"] for r in rows]])
        ax.errorbar(x, y, yerr=err, marker="o", ms=3, capsize=2, label=name)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, label="perfect calibration")
    ax.fill_between([0, 1], [-0.05, 0.95], [0.05, 1.05], color="grey", alpha=0.15, label="goal: within 0.05")
    ax.set(xlabel="mean predicted probability of success in the bin", ylabel="observed success rate (95 % interval)",
           xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"Reliability diagram: {n} simulated NISP spectra (seed {SEEDS['test']}), 10 bins", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
