"""Two PSF estimators on the same test sets: median relative errors with paired bootstrap intervals.

    python benchmarks/psf_model_ab.py RUN_A RUN_B [--data runs/bench-psf/data] [--boot 2000]

For each test set (the directories of shards under ``--data``, as made by
``benchmarks/psf_cnn_vs_fit.py``) and for r0 and A: each model's median relative error [%] with its
95 % bootstrap interval, and the 95 % interval of the difference B - A (resampling the same PSFs
for both, so that a change is told from the draw of the test set); then each model's median
signed error [%] (its bias) and the share of PSFs whose error lies within the predicted
uncertainty (``_err``; 68 % for a calibrated Gaussian uncertainty).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_a")
    ap.add_argument("model_b")
    ap.add_argument("--data", default="runs/bench-psf/data")
    ap.add_argument("--boot", type=int, default=2000)
    args = ap.parse_args()

    from astrolearn.io.shards import list_shards, read_shard
    from astrolearn.psf.learn import PsfEstimator

    models = {"A": PsfEstimator(Path(args.model_a)), "B": PsfEstimator(Path(args.model_b))}
    rng = np.random.default_rng(0)
    print(f"A = {args.model_a}, B = {args.model_b}; median relative error [%] (95 % bootstrap interval)\n")
    print("| test set | parameter | A | B | B - A | bias A | bias B | within err A | within err B |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for data in sorted(p for p in Path(args.data).iterdir() if p.is_dir()):
        shards = [read_shard(p, domain="psf") for p in list_shards(data)]
        images = np.concatenate([s.arrays["images"] for s in shards]).astype(np.float64)
        est = {k: m.predict(images) for k, m in models.items()}
        idx = rng.integers(0, len(images), (args.boot, len(images)))
        for par in ("r0", "amp"):
            truth = np.concatenate([s.column(par) for s in shards])
            signed = {k: (e[par] / truth - 1) * 100 for k, e in est.items()}
            err = {k: np.abs(v) for k, v in signed.items()}
            # _err is value x the predicted standard deviation of ln(value)
            cover = {k: 100 * np.mean(np.abs(np.log(e[par] / truth)) < e[f"{par}_err"] / e[par])
                     for k, e in est.items()}
            med = {k: np.median(v[idx], axis=1) for k, v in err.items()}
            cell = {k: f"{np.median(err[k]):.2f} ({np.percentile(med[k], 2.5):.2f}-{np.percentile(med[k], 97.5):.2f})"
                    for k in err}
            lo, hi = np.percentile(med["B"] - med["A"], [2.5, 97.5])
            print(f"| {data.name} | {par} | {cell['A']} | {cell['B']} | {lo:+.2f} to {hi:+.2f} | "
                  f"{np.median(signed['A']):+.2f} | {np.median(signed['B']):+.2f} | "
                  f"{cover['A']:.0f} % | {cover['B']:.0f} % |")


if __name__ == "__main__":
    main()
