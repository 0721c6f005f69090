"""CNN vs least-squares fit vs hybrid on NIRC2 test sets never seen in training (issue 13 goals).

    python benchmarks/psf_cnn_vs_fit.py [--model RUN_DIR] [--n 200] [--n-noiseless 50] [--out DIR] [--fits-only]

Test sets, simulated with the ``nirc2`` preset from seeds that no training, calibration or earlier
test set used (``--seeds``): noisy with static aberrations (default priors), noisy without,
noiseless with. Each goes through ``astrolearn psf evaluate`` (CNN on all, fit from the prior
median and hybrid, the fit started from and regularised by the CNN, on all; fits are cached and
resume batch by batch, so an interrupted run continues where it stopped). The set without static
aberrations also goes through the model trained without them (``--model-nostatic``, default the
shipped ``nirc2-nostatic``: ``psf predict --static none``), told what the fit is told there.

Printed: the goal table (median, mean and p90 relative errors, median error / Cramér-Rao bound of
r0 and A for each method; CNN/fit and hybrid/fit ratios of the median errors with 95 % paired
bootstrap intervals, PSFs resampled), the goals (met only where the interval clears them), fit
failures and run-aways of every method, A by magnitude, the speed of CNN, fit and hybrid on the
same PSFs (``benchmarks/timing.py``) and the real NIRC2 frame's r0 by CNN, fit and hybrid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import timing  # noqa: E402

#: The code the printed result measures (``benchmarks/check_results.py``).
MEASURED = ["astrolearn/psf/evaluate.py", "astrolearn/psf/fit.py", "astrolearn/psf/learn.py", "astrolearn/psf/model.py",
            "astrolearn/psf/presets/nirc2.yaml", "astrolearn/psf/models/nirc2/psf_model.json",
            "astrolearn/psf/models/nirc2-nostatic/psf_model.json", "benchmarks/psf_cnn_vs_fit.py"]
#: Goals of issue 13 section 5: ratio of median relative errors to the fit's, at most.
RATIO_GOALS = {("cnn", "r0"): 1.0, ("cnn", "amp"): 1.5, ("hybrid", "r0"): 1.0, ("hybrid", "amp"): 1.0}
NOISELESS_R0_GOAL_PCT = 2.0
REAL_R0_RANGE_M = (0.12, 0.20)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="run directory (default: the shipped nirc2 model)")
    ap.add_argument("--model-nostatic", help="model trained without static aberrations (default: the shipped one)")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--n-noiseless", type=int, default=50)
    ap.add_argument("--seeds", type=int, nargs=3, default=(9101, 9102, 9103),
                    help="seeds of the noisy static, noisy static-free and noiseless test sets")
    ap.add_argument("--sets", nargs="+", choices=["noisy_static", "noisy_nostatic", "noiseless_static"],
                    default=["noisy_static", "noisy_nostatic", "noiseless_static"],
                    help="test sets to evaluate (fits with the 9 static modes cost ~30 s per PSF on 2 cores)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the ratio intervals")
    ap.add_argument("--out", default="runs/bench-psf-13")
    ap.add_argument("--real", default="../shared/data/keck/20130801_n0004.fits")
    ap.add_argument("--fits-only", action="store_true",
                    help="only simulate the test sets and run the fits (cached for the full run)")
    args = ap.parse_args()

    from astrolearn.psf.evaluate import evaluate
    from astrolearn.psf.instruments import load_instrument
    from astrolearn.psf.learn import packaged_model
    from astrolearn.psf.simulate import simulate

    print(timing.results_marker("psf_cnn_vs_fit", MEASURED))
    print(f"`python benchmarks/psf_cnn_vs_fit.py {' '.join(sys.argv[1:])}`, commit {timing.commit()}, "
          f"{timing.machine()}\n")
    inst = load_instrument("nirc2")
    model = Path(args.model) if args.model else packaged_model(inst)
    model_nostatic = Path(args.model_nostatic) if args.model_nostatic else packaged_model(inst, static=False)
    out = Path(args.out)
    sets = {
        "noisy_static": (args.n, args.seeds[0], {}),
        "noisy_nostatic": (args.n, args.seeds[1], {"static": False}),
        "noiseless_static": (args.n_noiseless, args.seeds[2], {"noise": "none"}),
    }
    runs = [(name, name, model) for name in sets if name in args.sets]
    if "noisy_nostatic" in args.sets:
        runs.append(("noisy_nostatic", "noisy_nostatic_told", model_nostatic))
    for name, report, estimator in runs:
        n, seed, cfg = sets[name]
        data = out / "data" / name
        if not (data / "config.yaml").is_file():
            simulate(inst, n, seed, data, cfg, progress=False)
        if args.fits_only and report.endswith("_told"):
            continue
        evaluate(estimator, data, out / report, compare_fit=True, progress=True, hybrid=not args.fits_only)
    if args.fits_only:
        return
    rng = np.random.default_rng(0)
    verdicts = print_goal_table(out, runs, args.bootstrap, rng)
    print_failures(out, [report for _, report, _ in runs])
    print_a_by_magnitude(out, [(name, report) for name, report, _ in runs])
    if "noisy_nostatic" in args.sets:
        print_speed(out / "data" / "noisy_nostatic", model_nostatic, inst)
    verdicts += real_frame(model, model_nostatic, inst, Path(args.real))
    print("\n# Goals (issue 13, section 5)\n")
    print("| goal | value (95 % interval) | met |")
    print("|---|---|---|")
    for goal, value, met in verdicts:
        print(f"| {goal} | {value} | {met} |")


def _relative_errors(out: Path, name: str, report: str) -> dict:
    """(method, parameter) -> |estimate / truth - 1| per test PSF, in the order of the test set."""
    from astrolearn.io.shards import list_shards, read_shard
    from astrolearn.io.tables import read_csv

    shards = [read_shard(p, domain="psf") for p in list_shards(out / "data" / name)]
    truth = {c: np.concatenate([s.column(c) for s in shards]) for c in ("r0", "amp")}
    rel = {}
    for method in ("cnn", "fit", "hybrid"):
        table = read_csv(out / report / f"{method}.csv")
        for param in ("r0", "amp"):
            rel[method, param] = np.abs(np.asarray(table[param], float) / truth[param][: len(table[param])] - 1)
    return rel


def _ratio_interval(num: np.ndarray, den: np.ndarray, n_boot: int, rng) -> tuple[float, float, float]:
    """Ratio of median errors and its 95 % paired bootstrap interval (the same PSFs resampled for both)."""
    idx = rng.integers(0, len(num), size=(n_boot, len(num)))
    boots = np.nanmedian(num[idx], axis=1) / np.nanmedian(den[idx], axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(np.nanmedian(num) / np.nanmedian(den)), float(lo), float(hi)


def _median_interval(x: np.ndarray, n_boot: int, rng) -> tuple[float, float, float]:
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    lo, hi = np.percentile(np.nanmedian(x[idx], axis=1), [2.5, 97.5])
    return float(np.nanmedian(x)), float(lo), float(hi)


def print_goal_table(out, runs, n_boot, rng) -> list[tuple[str, str, str]]:
    """Print every statistic of r0 and A per test set and method; return the goal verdicts."""
    from astrolearn.io.tables import read_csv

    verdicts = []
    print("# CNN vs fit vs hybrid, NIRC2 (goal table; ratios of median errors with 95 % bootstrap intervals)\n")
    print("| test set | parameter | statistic | CNN | fit | hybrid | CNN/fit | hybrid/fit |")
    print("|---|---|---|---|---|---|---|---|")
    for name, report, _ in runs:
        rel = _relative_errors(out, name, report)
        err = read_csv(out / report / "errors.csv")
        rows = {(m, p): i for i, (m, p, s) in enumerate(zip(err["method"], err["parameter"], err["subset"]))
                if s == "all"}
        for param in ("r0", "amp"):
            ratios = {}
            for method in ("cnn", "hybrid"):
                ratios[method] = _ratio_interval(rel[method, param], rel["fit", param], n_boot, rng)
            for stat, f in (("median rel %", np.nanmedian), ("mean rel %", np.nanmean),
                            ("p90 rel %", lambda x: np.nanpercentile(x, 90))):
                v = {m: 100 * f(rel[m, param]) for m in ("cnn", "fit", "hybrid")}
                cells = ["{:.3g} ({:.3g}-{:.3g})".format(*ratios[m]) if stat == "median rel %"
                         else f"{v[m] / v['fit']:.2f}" for m in ("cnn", "hybrid")]
                print(f"| {report} | {param} | {stat} | {v['cnn']:.3g} | {v['fit']:.3g} | {v['hybrid']:.3g} | "
                      f"{cells[0]} | {cells[1]} |")
            crb = {m: float(err["err/CRB_median"][rows[m, param]]) for m in ("cnn", "fit", "hybrid")}
            print(f"| {report} | {param} | median err/CRB | {crb['cnn']:.3g} | {crb['fit']:.3g} | {crb['hybrid']:.3g} "
                  f"| {crb['cnn'] / crb['fit']:.2f} | {crb['hybrid'] / crb['fit']:.2f} |")
            if name.startswith("noisy"):
                for method in ("cnn", "hybrid"):
                    goal = RATIO_GOALS[method, param]
                    r, lo, hi = ratios[method]
                    met = "yes" if hi <= goal else ("no" if lo > goal else "not shown")
                    verdicts.append((f"{report}: {method}/fit median error of {param} <= {goal}",
                                     f"{r:.2f} ({lo:.2f}-{hi:.2f})", met))
            if name == "noiseless_static" and param == "r0":
                m, lo, hi = (100 * v for v in _median_interval(rel["cnn", "r0"], n_boot, rng))
                met = "yes" if hi <= NOISELESS_R0_GOAL_PCT else ("no" if lo > NOISELESS_R0_GOAL_PCT else "not shown")
                verdicts.append((f"noiseless CNN r0 median error <= {NOISELESS_R0_GOAL_PCT:g} %",
                                 f"{m:.2f} % ({lo:.2f}-{hi:.2f})", met))
    return verdicts


def print_failures(out, reports):
    """Fit status counts and run-aways (r0 > 10 m, non-finite estimates) of every method, with n."""
    from astrolearn.io.tables import read_csv
    from astrolearn.psf.fit import status_summary

    print("\n# Failures: fits not converged, run-aways (r0 > 10 m) and non-finite estimates\n")
    print("| report | method | n | not converged | iteration cap | at a bound | r0 > 10 m | non-finite r0 or A |")
    print("|---|---|---|---|---|---|---|---|")
    for report in reports:
        for method in ("cnn", "fit", "hybrid"):
            t = read_csv(out / report / f"{method}.csv")
            r0, amp = np.asarray(t["r0"], float), np.asarray(t["amp"], float)
            s = status_summary(t["status"]) if "status" in t else None
            cells = ["-", "-", "-"] if s is None else [s["failed"], s["iteration_cap"], s["at_bound"]]
            print(f"| {report} | {method} | {len(r0)} | {cells[0]} | {cells[1]} | {cells[2]} | {(r0 > 10).sum()} | "
                  f"{(~np.isfinite(r0) | ~np.isfinite(amp)).sum()} |")


def print_a_by_magnitude(out, reports: list[tuple[str, str]]):
    """A's error against the star's magnitude: an estimator limited by the noise improves on
    brighter stars; a flat error is the estimator's own floor. Also the median signed error.
    ``reports``: (test set, report directory) pairs under ``out``."""
    from astrolearn.io.shards import list_shards, read_shard
    from astrolearn.io.tables import read_csv

    print("\n# A: median relative error (%) by magnitude tercile, and median signed error (bias, %)\n")
    print("| report | method | bright | middle | faint | bias |")
    print("|---|---|---|---|---|---|")
    for name, report in reports:
        shards = [read_shard(p, domain="psf") for p in list_shards(out / "data" / name)]
        amp, mag = (np.concatenate([s.column(c) for s in shards]) for c in ("amp", "mag"))
        edges = np.quantile(mag, [0, 1 / 3, 2 / 3, 1])
        tercile = np.clip(np.searchsorted(edges, mag, side="right") - 1, 0, 2)
        for method in ("cnn", "fit", "hybrid"):
            est = read_csv(out / report / f"{method}.csv")["amp"]
            rel, k_of = est / amp[: len(est)] - 1, tercile[: len(est)]
            med = [100 * np.median(np.abs(rel[k_of == k])) for k in range(3)]
            print(f"| {report} | {method} | {med[0]:.3g} | {med[1]:.3g} | {med[2]:.3g} | {100 * np.median(rel):+.3g} |")


def print_speed(data_dir, model_nostatic, inst, n: int = 16):
    """CNN, fit and hybrid on the same 16 static-free noisy PSFs (the fit without static modes:
    with them it costs tens of seconds per PSF; the evaluation's ``s_per_psf`` column has that)."""
    from astrolearn.io.shards import list_shards, read_shard
    from astrolearn.psf.fit import PsfFitter
    from astrolearn.psf.learn import PsfEstimator
    from astrolearn.psf.noise import variance_from_image

    images = np.concatenate([read_shard(p, domain="psf").arrays["images"] for p in list_shards(data_dir)])[:n]
    images, n = images.astype(np.float64), len(images)
    weights = 1.0 / variance_from_image(images, inst)
    estimator = PsfEstimator(model_nostatic)
    fitter = PsfFitter(inst, fit_static=False)
    cnn = estimator.predict(images)
    methods = {"fit (batched LM, no static modes)": lambda: fitter.fit(images, weights),
               "CNN (nirc2-nostatic)": lambda: estimator.predict(images),
               "hybrid (CNN + fit from it)": lambda: fitter.fit(images, weights, initial=estimator.predict(images),
                                                                prior=cnn)}
    for threads in (1, 2):
        with timing.threads(threads):
            rows = timing.compare(methods, units=n)
        print(f"\n# Speed, {threads} thread(s) for every method, the same {n} PSFs per call\n")
        print(timing.markdown(rows, "PSFs", next(iter(methods))))


def real_frame(model, model_nostatic, inst, real_path: Path) -> list[tuple[str, str, str]]:
    """r0(500 nm) of the real NIRC2 frame by CNN, fit and hybrid, as psf predict / psf fit give it."""
    from astrolearn.psf.data import load_psf_images
    from astrolearn.psf.fit import PsfFitter
    from astrolearn.psf.learn import PsfEstimator

    if not real_path.exists():
        print(f"\nreal frame {real_path}: absent, not measured")
        return [("real frame r0(500 nm) in 0.12-0.20 m", "not measured (file absent)", "not shown")]
    real = load_psf_images(real_path, inst)
    lo, hi = REAL_R0_RANGE_M
    print("\n# Real NIRC2 frame (20130801_n0004.fits): r0(500 nm) [m]\n")
    print("| method | r0 | r0_err |")
    print("|---|---|---|")
    verdicts = []
    for label, mdl, static in (("CNN", model, True), ("CNN without static (--static none)", model_nostatic, False)):
        cnn = PsfEstimator(mdl).predict(real.images)
        fitter = PsfFitter(inst, fit_static=static)
        for method, table in ((label, cnn), (f"hybrid ({label}, --refine)",
                                             fitter.fit(real.images, real.weights, initial=cnn, prior=cnn).table()),
                              (f"fit ({'9 static modes' if static else '--static none'})",
                               fitter.fit(real.images, real.weights).table())):
            r0, r0_err = float(table["r0"][0]), float(table["r0_err"][0])
            print(f"| {method} | {r0:.4f} | {r0_err:.4f} |")
            verdicts.append((f"real frame r0(500 nm) by {method} in {lo}-{hi} m", f"{r0:.3f} +- {r0_err:.3f} m",
                             "yes" if lo <= r0 - r0_err and r0 + r0_err <= hi else
                             ("no" if r0 < lo or r0 > hi else "not shown")))
    return verdicts


if __name__ == "__main__":
    main()
