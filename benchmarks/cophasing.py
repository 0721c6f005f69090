"""Petal cophasing (issue 16): closed loop, CNN vs least squares, Cramer-Rao bound, capture range.

    python benchmarks/cophasing.py [--model RUN_DIR] [--cases 500] [--lsq-cases 50] [--photons 1e5]
                                   [--budgets 1e3,1e4,1e5,1e6] [--crb-cases 60] [--capture-cases 4]

Every figure is printed as it is measured (95 % bootstrap intervals on medians held against a goal;
a goal is met only when the interval clears it). Sections:

1. Closed loop (``cophase loop``'s code), initial pistons U(+-300 nm) and tip/tilt U(+-150 nm
   RMS), photons per image ``--photons``: median residual WFE and Strehl (at the middle
   wavelength) after 1 and 2 corrections, CNN on ``--cases`` cases, least squares on the first
   ``--lsq-cases`` of them (same errors, same noise draws).
2. Time per estimate, CNN vs least squares, on the same measurements (benchmarks/timing.py).
3. Photon budgets: single-shot errors of the CNN (and least squares on ``--crb-cases // 3``) on
   ``--crb-cases`` cases with pistons U(+-``--crb-piston``) and tip/tilt U(+-``--crb-tiptilt``)
   (the regime of a second correction, where the estimate is unique: the bound is local), as
   multiples of the Cramer-Rao bound at the truth: the RMS over cases and the 12 observable modes,
   and a robust ratio (the median over modes of 1.4826 x median |error| / RMS bound) that gross
   failures do not set; and the CNN loop's median WFE after 2 corrections from the full prior at
   each budget (where the 15 nm goal breaks).
4. Capture range: pistons only, U(+-A): share of cases whose WFE after 2 corrections is < 15 nm,
   CNN (broadband + diversity, the shipped sensor) and least squares with and without diversity,
   monochromatic (650 nm) and broadband (600/650/700 nm), on ``--capture-cases`` cases each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

GOAL_NM = 15.0
#: What the results measure (the marker above the RESULTS.md section; benchmarks/check_results.py).
CODE = ["astrolearn/cophasing/fit.py", "astrolearn/cophasing/learn.py", "astrolearn/cophasing/loop.py",
        "astrolearn/cophasing/optics.py", "astrolearn/cophasing/simulate.py",
        "astrolearn/cophasing/models/azimov", "benchmarks/cophasing.py"]


def bootstrap_median(values, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    meds = np.median(values[rng.integers(0, len(values), (n_boot, len(values)))], axis=1)
    return float(np.median(values)), float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))


def fmt(ci, digits=1) -> str:
    return f"{ci[0]:.{digits}f} [{ci[1]:.{digits}f}, {ci[2]:.{digits}f}]"


def verdict_below(ci, goal) -> str:
    return "met" if ci[2] < goal else ("not met" if ci[1] > goal else "undecided")


def verdict_above(ci, goal) -> str:
    return "met" if ci[1] > goal else ("not met" if ci[2] < goal else "undecided")


def loop(optics, estimate, start, iterations, photons, noise, seed):
    from astrolearn.cophasing.loop import run_loop

    r = run_loop(optics, estimate, start, iterations, photons, noise, np.random.default_rng(seed))
    k = iterations + 1
    return r["wfe_nm"].reshape(-1, k), r["strehl"].reshape(-1, k), r["seconds_per_estimate"]


def parser(doc: str, sections: bool = True) -> argparse.ArgumentParser:
    """The options the cophasing benchmarks share (``sections``: those of the sectioned ones);
    each script sets its own defaults and adds its own options."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="CNN run directory whose optics are used (default: the shipped azimov)")
    ap.add_argument("--cases", type=int, default=500)
    ap.add_argument("--budgets", default="1e3,1e4,1e5,1e6")
    ap.add_argument("--seed", type=int, default=2026)
    if sections:
        ap.add_argument("--photons", type=float, default=1e5)
        ap.add_argument("--crb-cases", type=int, default=60)
        ap.add_argument("--capture-cases", type=int, default=4)
        ap.add_argument("--capture-amplitudes", default="50,150,300,600")
        ap.add_argument("--sections", default="1,2,3,4", help="which sections to run")
    return ap


def setup(args):
    """(CNN, read noise, least-squares fitter) of every section: the shipped sensor (or ``--model``'s),
    1 e- read noise, no background; one torch thread."""
    import torch

    from astrolearn.cophasing.fit import LsqFitter
    from astrolearn.cophasing.learn import CophaseEstimator

    torch.set_num_threads(1)
    cnn = CophaseEstimator(args.model)
    return cnn, {"read_noise_e": 1.0, "background_e": 0.0}, LsqFitter.from_meta(cnn.meta)


def main():
    ap = parser(__doc__)
    ap.add_argument("--lsq-cases", type=int, default=50)
    ap.add_argument("--crb-piston", type=float, default=50.0)
    ap.add_argument("--crb-tiptilt", type=float, default=25.0)
    args = ap.parse_args()

    from astrolearn.cophasing.loop import initial_modes
    from timing import commit, machine, results_marker

    cnn, noise, fitter = setup(args)
    optics = cnn.optics
    est_cnn = lambda im: cnn.estimate(im)[0]  # noqa: E731
    est_lsq = lambda im: fitter.fit(im, with_std=False).modes  # noqa: E731
    print(results_marker("cophasing", CODE))
    print(f"commit {commit()}; {machine()}; 1 torch thread")
    print(f"model {cnn.dir}; optics {optics.to_dict()}; read noise {noise['read_noise_e']} e-; "
          f"LSQ {fitter.starts} starts x {fitter.max_iter} L-BFGS iterations\n")

    sections = {int(k) for k in args.sections.split(",")}
    rng = np.random.default_rng(args.seed)
    start = initial_modes(args.cases, 300.0, 150.0, rng)
    if 1 in sections:
        closed_loop(args, optics, est_cnn, est_lsq, start, noise)
    if 2 in sections:
        timing_rows(args, optics, est_cnn, est_lsq, start, noise)
    if 3 in sections:
        budgets_rows(args, optics, est_cnn, est_lsq, start, noise)
    if 4 in sections:
        capture_rows(args, optics, est_cnn, fitter, noise)


def closed_loop(args, optics, est_cnn, est_lsq, start, noise):
    print(f"## 1. Closed loop, {args.photons:.0e} e- per image, pistons U(+-300 nm), tip/tilt U(+-150 nm RMS)\n")
    print("| estimator | cases | WFE before | WFE after 1 [95 % CI] | after 2 | < 15 nm goal (after 2) | "
          "Strehl after 1 | after 2 | 0.95 after 1 | 0.99 after 2 | s/estimate |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, estimate, n in (("CNN", est_cnn, args.cases), ("LSQ", est_lsq, args.lsq_cases)):
        t0 = time.time()
        wfe, strehl, sec = loop(optics, estimate, start[:n], 2, args.photons, noise, args.seed + 1)
        w1, w2 = bootstrap_median(wfe[:, 1]), bootstrap_median(wfe[:, 2])
        s1, s2 = bootstrap_median(strehl[:, 1]), bootstrap_median(strehl[:, 2])
        print(f"| {name} | {n} | {np.median(wfe[:, 0]):.0f} | {fmt(w1)} | {fmt(w2)} | {verdict_below(w2, GOAL_NM)} | "
              f"{fmt(s1, 3)} | {fmt(s2, 3)} | {verdict_above(s1, 0.95)} | {verdict_above(s2, 0.99)} | {sec:.3g} |",
              flush=True)
        print(f"<!-- {name}: share < 15 nm after 2: {np.mean(wfe[:, 2] < GOAL_NM):.3f}; p90 after 2 "
              f"{np.percentile(wfe[:, 2], 90):.1f} nm; {time.time() - t0:.0f} s -->", flush=True)



def timing_rows(args, optics, est_cnn, est_lsq, start, noise):
    from astrolearn.cophasing.simulate import render
    from timing import compare, markdown, threads

    images = render(optics, start[:4], args.photons, noise, np.random.default_rng(1))
    with threads(1):
        rows = compare({"CNN": lambda: est_cnn(images), "LSQ": lambda: est_lsq(images)}, units=len(images),
                       reference="LSQ", repeats=5)
    print("\n## 2. Time per estimate (4 measurements per call, 1 thread)\n")
    print(markdown(rows, "estimates", "LSQ"), flush=True)



def budgets_rows(args, optics, est_cnn, est_lsq, start, noise):
    from astrolearn.cophasing.fit import crb, fisher, jacobian
    from astrolearn.cophasing.loop import initial_modes
    from astrolearn.cophasing.optics import observable
    from astrolearn.cophasing.simulate import render

    budgets = [float(b) for b in args.budgets.split(",")]
    cases = initial_modes(args.crb_cases, args.crb_piston, args.crb_tiptilt, np.random.default_rng(args.seed + 7))
    truth = observable(cases)
    jac = jacobian(optics, cases)
    print(f"\n## 3. Photon budgets: single-shot error / Cramer-Rao bound, pistons U(+-{args.crb_piston:g} nm), "
          f"tip/tilt U(+-{args.crb_tiptilt:g} nm) ({args.crb_cases} cases; LSQ on {max(1, args.crb_cases // 3)}); "
          "CNN loop from the full prior\n")
    print("| photons per image | CRB RMS [nm] | CNN RMS error [nm] | CNN / CRB (RMS; robust) | LSQ RMS error [nm] | "
          "LSQ / CRB (RMS; robust) | CNN loop WFE after 2 [95 % CI] | < 15 nm |")
    print("|---|---|---|---|---|---|---|---|")
    m = max(1, args.crb_cases // 3)
    for b in budgets:
        bound = crb(fisher(optics, cases, b, noise["read_noise_e"], jac=jac))
        crb_rms = float(np.sqrt(np.mean(bound ** 2)))
        im = render(optics, cases, b, noise, np.random.default_rng(int(b)))
        d_cnn, d_lsq = est_cnn(im) - truth, est_lsq(im[:m]) - truth[:m]
        e_cnn, e_lsq = float(np.sqrt(np.mean(d_cnn ** 2))), float(np.sqrt(np.mean(d_lsq ** 2)))
        crb_m = float(np.sqrt(np.mean(bound[:m] ** 2)))
        wfe, _, _ = loop(optics, est_cnn, start, 2, b, noise, args.seed + 3)
        w2 = bootstrap_median(wfe[:, 2])
        print(f"| {b:.0e} | {crb_rms:.2f} | {e_cnn:.2f} | {e_cnn / crb_rms:.1f}; {robust_ratio(d_cnn, bound):.1f} | "
              f"{e_lsq:.2f} | {e_lsq / crb_m:.1f}; {robust_ratio(d_lsq, bound[:m]):.1f} | {fmt(w2)} | "
              f"{verdict_below(w2, GOAL_NM)} |", flush=True)



def robust_ratio(error, bound) -> float:
    """Median over modes of (1.4826 median |error| of the mode) / (RMS bound of the mode)."""
    sigma = 1.4826 * np.median(np.abs(error), axis=0)
    return float(np.median(sigma / np.sqrt(np.mean(bound ** 2, axis=0))))


def capture_rows(args, optics, est_cnn, fitter, noise):
    from astrolearn.cophasing.fit import LsqFitter
    from astrolearn.cophasing.loop import initial_modes
    from astrolearn.cophasing.optics import Optics

    amps = [float(a) for a in args.capture_amplitudes.split(",")]
    sensors = {"CNN broadband + diversity": None,
               "LSQ broadband + diversity": optics.to_dict(),
               "LSQ broadband, no diversity": {**optics.to_dict(), "diversity_nm": 0.0},
               "LSQ 650 nm + diversity": {**optics.to_dict(), "wavelengths_nm": [650.0]},
               "LSQ 650 nm, no diversity": {**optics.to_dict(), "wavelengths_nm": [650.0], "diversity_nm": 0.0}}
    print(f"\n## 4. Capture range: share of cases with WFE < 15 nm after 2 corrections, pistons only U(+-A), "
          f"{args.photons:.0e} e- (CNN: {args.cases} cases, LSQ: {args.capture_cases})\n")
    print("| sensor | " + " | ".join(f"A = {a:.0f} nm" for a in amps) + " |")
    print("|---|" + "---|" * len(amps))
    for name, spec in sensors.items():
        shares = []
        for a in amps:
            r = np.random.default_rng(args.seed + int(a))
            n = args.cases if spec is None else args.capture_cases
            pist = initial_modes(n, a, 0.0, r)
            if spec is None:
                wfe, _, _ = loop(optics, est_cnn, pist, 2, args.photons, noise, args.seed + 5)
            else:
                o = Optics.from_dict(spec)
                f = LsqFitter(o, fitter.priors, noise["read_noise_e"], fitter.starts, fitter.max_iter)
                wfe, _, _ = loop(o, lambda im: f.fit(im, with_std=False).modes, pist, 2, args.photons, noise,
                                 args.seed + 5)
            shares.append(float(np.mean(wfe[:, 2] < GOAL_NM)))
        print(f"| {name} | " + " | ".join(f"{s:.2f}" for s in shares) + " |", flush=True)


if __name__ == "__main__":
    main()
