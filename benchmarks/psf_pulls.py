"""Are the ``_err`` columns right? Pulls (estimate - truth) / err of the fit and the shipped CNNs.

    python benchmarks/psf_pulls.py [--n-cnn 500] [--n-fit 120] [--seed 101] [--no-fit] [--raw]

Noisy simulated sets drawn as each shipped model's training set (its instrument, priors and
detector noise; every frame noisy): NIRC2 with static aberrations (model ``nirc2``, fit with the
static modes free), NIRC2 without (``nirc2-nostatic``, fit with ``--static none``) and IRDIS
(``irdis``, CNN only). For each method and parameter: the pulls' mean, standard deviation,
robust standard deviation (1.4826 MAD) and share within +-1 (68.3 % for Gaussian errors of the
right size). Scale parameters are compared in ln where the estimator works in ln (see
:func:`astrolearn.psf.learn.pulls`: r0, amp, alpha, ratio for both; bck for the CNN). The fit's
rows are over its converged fits; the others are counted. ``--raw``:
the CNN's standard deviations without the model's ``err_scale`` calibration.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import commit, machine, results_marker  # noqa: E402

SHIPPED = ["astrolearn/psf/models/nirc2/checkpoints/best-epoch=002.ckpt", "astrolearn/psf/models/nirc2/psf_model.json",
           "astrolearn/psf/models/nirc2-nostatic/checkpoints/best-epoch=003.ckpt",
           "astrolearn/psf/models/nirc2-nostatic/psf_model.json",
           "astrolearn/psf/models/irdis/checkpoints/best-epoch=003.ckpt", "astrolearn/psf/models/irdis/psf_model.json"]
#: The code the printed result measures (benchmarks/check_results.py): simulation like the
#: training sets, the CNNs with their err_scale, the fit and its covariance.
MEASURED = ["astrolearn/psf/learn.py", "astrolearn/psf/fit.py", "astrolearn/psf/model.py", "astrolearn/psf/noise.py",
            "astrolearn/psf/simulate.py", "astrolearn/psf/instruments.py", "astrolearn/psf/pupils.py", *SHIPPED,
            "benchmarks/psf_pulls.py"]

SETS = (("nirc2", True, True), ("nirc2-nostatic", False, True), ("irdis", None, False))
PARAMS = ["r0", "bck", "amp", "alpha", "ratio", "beta", "flux"]


def row(label, method, name, z):
    from astrolearn.psf.learn import pull_stats

    s = pull_stats(z)
    return (f"| {label} | {method} | {name} | {s['n']} | {np.nanmean(z):+.2f} | {s['std']:.2f} | "
            f"{s['robust_std']:.2f} | {s['within_1']:.0f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-cnn", type=int, default=500)
    ap.add_argument("--n-fit", type=int, default=120)
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--no-fit", action="store_true")
    ap.add_argument("--raw", action="store_true", help="the CNN's uncalibrated standard deviations")
    ap.add_argument("--save", help="prefix of .npz files keeping each set's fit table and truth")
    ap.add_argument("--sets", default=",".join(s[0] for s in SETS))
    args = ap.parse_args()

    from astrolearn.psf.fit import CONVERGED, LOG_PARAMS, PsfFitter, status_summary
    from astrolearn.psf.instruments import Instrument
    from astrolearn.psf.learn import PACKAGED, PsfEstimator, pulls, simulated_like_training
    from astrolearn.psf.noise import variance_from_image

    import torch

    print(results_marker("psf_pulls", MEASURED))
    print(f"Pulls (est - true) / err, seed {args.seed}; commit {commit()}; {machine()}; {torch.get_num_threads()} "
          f"torch threads{'; CNN std uncalibrated (--raw)' if args.raw else ''}\n")
    print("| set | method | parameter | n | mean | std | robust std | within +-1 [%] |\n"
          "|---|---|---|---|---|---|---|---|")
    for name, static, fit in SETS:
        if name not in args.sets.split(","):
            continue
        est = PsfEstimator(PACKAGED / name)
        if args.raw:
            est.meta = {**est.meta, "err_scale": None}
        images, truth = simulated_like_training(est.meta, args.n_cnn, args.seed, static)
        even = est.even if static is not False else []
        names = PARAMS + [f"stat_{i + 1}" for i in range(len(even))]
        cnn = pulls(est.predict(images), truth, names, even)
        for n in names:
            print(row(name, "CNN", n, cnn[n]))
        if not fit or args.no_fit:
            continue
        inst = Instrument.from_dict(est.meta["instrument"])
        m = min(args.n_fit, len(images))
        t0 = time.perf_counter()
        result = PsfFitter(inst, fit_static=bool(static)).fit(images[:m], 1 / variance_from_image(images[:m], inst))
        seconds = (time.perf_counter() - t0) / m
        table = result.table()
        if args.save:
            np.savez(f"{args.save}-{name}.npz", **table, **{f"true_{k}": v[:m] for k, v in truth.items()})
        ok = result.status == CONVERGED
        fz = pulls(table, {k: v[:m] for k, v in truth.items()}, names, even, log=LOG_PARAMS)
        for n in names:
            print(row(name, f"fit ({ok.sum()} converged)", n, fz[n][ok]))
        print(f"\n{name}: fit {seconds:.2f} s/PSF; not converged: {status_summary(result.status)['text']}; "
              f"chi2_red median {np.median(result.chi2):.4f} (5-95 %: {np.percentile(result.chi2, 5):.4f}-"
              f"{np.percentile(result.chi2, 95):.4f}); errors scaled (err_scale != 1) on "
              f"{int((result.err_scale != 1).sum())}; all fits' pulls std: "
              + ", ".join(f"{n} {np.nanstd(fz[n]):.2f}" for n in PARAMS) + "\n")
    print(f"End: {machine()}")


if __name__ == "__main__":
    main()
