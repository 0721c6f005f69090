"""CNN vs least-squares fit vs hybrid on NIRC2 test sets never seen in training (issue goals).

    python benchmarks/psf_cnn_vs_fit.py [--model RUN_DIR] [--n 200] [--n-noiseless 50] [--out DIR] [--fits-only]

Test sets (seeds distinct from the training set's): noisy with static aberrations (default
priors), noisy without, noiseless with. Each goes through ``astrolearn psf evaluate`` (CNN on
all, fit from the prior median and hybrid, the fit started from and regularised by the CNN, on
all); the script then prints the goal table and
the real NIRC2 frame's r0 from ``psf predict`` and ``psf fit``. The set without static
aberrations also goes through the model trained without them (``--model-nostatic``, default the
shipped ``nirc2-nostatic``: ``psf predict --static none``), told what the fit is told there.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="run directory (default: the shipped nirc2 model)")
    ap.add_argument("--model-nostatic", help="model trained without static aberrations (default: the shipped one)")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--n-noiseless", type=int, default=50)
    ap.add_argument("--out", default="runs/bench-psf")
    ap.add_argument("--real", default="../shared/data/keck/20130801_n0004.fits")
    ap.add_argument("--speed-only", action="store_true", help="only the CNN inference timing and the real frame")
    ap.add_argument("--fits-only", action="store_true",
                    help="only simulate the test sets and run the fits (cached for the full run)")
    args = ap.parse_args()

    from astrolearn.io.tables import read_csv
    from astrolearn.psf.evaluate import evaluate
    from astrolearn.psf.instruments import load_instrument
    from astrolearn.psf.learn import packaged_model
    from astrolearn.psf.simulate import simulate

    inst = load_instrument("nirc2")
    model = Path(args.model) if args.model else packaged_model(inst)
    model_nostatic = Path(args.model_nostatic) if args.model_nostatic else packaged_model(inst, static=False)
    out = Path(args.out)
    sets = {
        "noisy_static": (args.n, 9001, {}),
        "noisy_nostatic": (args.n, 9002, {"static": False}),
        "noiseless_static": (args.n_noiseless, 9003, {"noise": "none"}),
    }
    summary = []
    runs = [(name, name, model) for name in sets] + [("noisy_nostatic", "noisy_nostatic_told", model_nostatic)]
    for name, report, estimator in ([] if args.speed_only else runs):
        n, seed, cfg = sets[name]
        data = out / "data" / name
        simulate(inst, n, seed, data, cfg, progress=False)
        evaluate(estimator, data, out / report, compare_fit=True, progress=True, hybrid=not args.fits_only)
        if args.fits_only:
            continue
        summary.append((name, report, read_csv(out / report / "errors.csv")))

    if args.fits_only:
        return
    if not args.speed_only:
        print_goal_table(out, summary)
    speed_and_real_frame(model, model_nostatic, inst, Path(args.real))


def print_goal_table(out, summary):
    from astrolearn.io.tables import read_csv

    print("# CNN vs fit vs hybrid, NIRC2 (goal table)\n")
    print("| test set | parameter | statistic | CNN | fit | hybrid | CNN/fit |")
    print("|---|---|---|---|---|---|---|")
    for _, name, err in summary:
        idx = {(m, p): i for i, (m, p) in enumerate(zip(err["method"], err["parameter"]))}
        for param in ("r0", "amp"):
            for stat in ("median_rel_%", "mean_rel_%", "p90_rel_%", "err/CRB_median"):
                v = {m: float(err[stat][idx[(m, param)]]) for m in ("cnn", "fit", "hybrid")}
                print(f"| {name} | {param} | {stat} | {v['cnn']:.3g} | {v['fit']:.3g} | {v['hybrid']:.3g} | "
                      f"{v['cnn'] / v['fit']:.2f} |")
    t = read_csv(out / "noisy_static" / "cnn.csv")
    fit = read_csv(out / "noisy_static" / "fit.csv")
    print(f"\nfit run-aways (r0 > 10 m) on noisy_static: {(fit['r0'] > 10).sum()} / {len(fit['r0'])}; "
          f"CNN: {(t['r0'] > 10).sum()}")
    print_a_by_magnitude(out, [(name, report) for name, report, _ in summary])


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


def speed_and_real_frame(model, model_nostatic, inst, real_path: Path, repeat: int = 5):
    from astrolearn.psf.data import load_psf_images
    from astrolearn.psf.fit import PsfFitter
    from astrolearn.psf.learn import PsfEstimator

    estimator = PsfEstimator(model)
    images = np.repeat(load_psf_images(real_path, inst).images, 2000, axis=0) if real_path.exists() \
        else np.random.default_rng(0).random((2000, 128, 128))
    estimator.predict(images[:64])
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        estimator.predict(images)
        rates.append(len(images) / (time.perf_counter() - t0))
    print(f"CNN inference: {np.median(rates):.0f} PSFs/s (median of {repeat} timings of {len(images)} PSFs, "
          f"{min(rates):.0f}-{max(rates):.0f}; CPU, batch 64, load average {os.getloadavg()[0]:.1f})")
    if real_path.exists():
        real = load_psf_images(real_path, inst)
        cnn_r0 = estimator.predict(real.images)["r0"][0]
        told_r0 = PsfEstimator(model_nostatic).predict(real.images)["r0"][0]
        fit_r0 = PsfFitter(inst, fit_static=False).fit(real.images, real.weights).values[0, 0]
        print(f"real NIRC2 frame: r0(500 nm) CNN {cnn_r0:.3f} m, CNN without static {told_r0:.3f} m, "
              f"fit without static {fit_r0:.3f} m")


if __name__ == "__main__":
    main()
