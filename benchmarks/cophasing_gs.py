"""Petal cophasing: the Gerchberg-Saxton baseline against least squares (issue 16).

    python benchmarks/cophasing_gs.py [--cases 50] [--budget-cases 30] [--crb-cases 60]
                                      [--capture-cases 50] [--gs-iterations 200]

The sections of ``benchmarks/cophasing.py`` with ``astrolearn.cophasing.gs.GsEstimator`` added,
on the same optics (the shipped model's sensor), read noise, starting errors and noise draws:

1. Closed loop at ``--photons`` from pistons U(+-300 nm), tip/tilt U(+-150 nm RMS) (seed 2026):
   GS and least squares on the first ``--cases`` cases of that section (the cases its LSQ row used),
   and GS on ``--gs-cases`` (its 500 cases by default).
2. Time per estimate, GS, least squares and the CNN on the same 4 measurements (benchmarks/timing.py).
3. Photon budgets: GS single-shot RMS error / Cramer-Rao bound on ``--crb-cases`` cases with pistons
   U(+-50 nm), tip/tilt U(+-25 nm) (section 3's cases), and the GS closed loop from the full prior
   on ``--budget-cases`` cases at each budget (``benchmarks/cophasing_budget.py``'s cases).
4. Capture range: pistons only U(+-A), share of cases with WFE < 15 nm after 2 corrections, GS
   with and without diversity, monochromatic (650 nm) and broadband (600/650/700 nm); for
   monochromatic light also the share once each petal's residual piston is taken modulo 650 nm
   (what a monochromatic sensor can tell).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cophasing import (CODE, GOAL_NM, bootstrap_median, fmt, loop, parser, robust_ratio,  # noqa: E402
                       setup, verdict_above, verdict_below)


def main():
    ap = parser(__doc__)
    ap.set_defaults(cases=50, budgets="1e2,3e2,1e3,3e3,1e4,1e5,1e6", capture_cases=50)
    ap.add_argument("--gs-cases", type=int, default=500, help="section 1: GS also on this many cases")
    ap.add_argument("--gs-iterations", type=int, default=200)
    ap.add_argument("--budget-cases", type=int, default=30)
    args = ap.parse_args()

    from astrolearn.cophasing.gs import GsEstimator
    from astrolearn.cophasing.loop import initial_modes
    from timing import commit, machine, results_marker

    cnn, noise, fitter = setup(args)
    optics = cnn.optics
    gs = GsEstimator(optics, iterations=args.gs_iterations)
    print(results_marker("cophasing_gs", [*CODE, "astrolearn/cophasing/gs.py", "benchmarks/cophasing_gs.py"]))
    print(f"`python benchmarks/cophasing_gs.py {' '.join(sys.argv[1:])}`, commit {commit()}; {machine()}; "
          f"1 torch thread; GS at most {gs.iterations} iterations (tolerance {gs.tol_nm} nm); "
          f"LSQ {fitter.starts} starts x {fitter.max_iter} L-BFGS iterations\n")
    sections = {int(k) for k in args.sections.split(",")}
    start = initial_modes(500, 300.0, 150.0, np.random.default_rng(args.seed))  # cophasing.py's section 1 cases
    est_lsq = lambda im: fitter.fit(im, with_std=False).modes  # noqa: E731
    if 1 in sections:
        closed_loop(args, optics, gs.estimate, est_lsq, start, noise)
    if 2 in sections:
        timing_rows(args, optics, gs.estimate, est_lsq, lambda im: cnn.estimate(im)[0], start, noise)
    if 3 in sections:
        budget_rows(args, optics, gs.estimate, start, noise)
    if 4 in sections:
        capture_rows(args, optics, noise)


def closed_loop(args, optics, est_gs, est_lsq, start, noise):
    print(f"### 1. Closed loop, {args.photons:.0e} e- per image, pistons U(+-300 nm), tip/tilt U(+-150 nm RMS)\n")
    print("| estimator | cases | WFE before | WFE after 1 [95 % CI] | after 2 | < 15 nm goal (after 2) | "
          "Strehl after 1 | after 2 | 0.95 after 1 | 0.99 after 2 | share < 15 nm after 2 | s/estimate |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, estimate, n in (("GS", est_gs, args.cases), ("LSQ", est_lsq, args.cases), ("GS", est_gs, args.gs_cases)):
        t0 = time.time()
        wfe, strehl, sec = loop(optics, estimate, start[:n], 2, args.photons, noise, args.seed + 1)
        w1, w2 = bootstrap_median(wfe[:, 1]), bootstrap_median(wfe[:, 2])
        s1, s2 = bootstrap_median(strehl[:, 1]), bootstrap_median(strehl[:, 2])
        print(f"| {name} | {n} | {np.median(wfe[:, 0]):.0f} | {fmt(w1)} | {fmt(w2)} | "
              f"{verdict_below(w2, GOAL_NM)} | {fmt(s1, 3)} | {fmt(s2, 3)} | {verdict_above(s1, 0.95)} | "
              f"{verdict_above(s2, 0.99)} | {np.mean(wfe[:, 2] < GOAL_NM):.2f} | {sec:.3g} |", flush=True)
        print(f"<!-- {name}: p90 after 2 {np.percentile(wfe[:, 2], 90):.1f} nm; cases > 100 nm after 2: "
              f"{int(np.sum(wfe[:, 2] > 100))}; {time.time() - t0:.0f} s -->", flush=True)


def timing_rows(args, optics, est_gs, est_lsq, est_cnn, start, noise):
    from astrolearn.cophasing.simulate import render
    from timing import compare, markdown, threads

    images = render(optics, start[:4], args.photons, noise, np.random.default_rng(1))
    with threads(1):
        rows = compare({"CNN": lambda: est_cnn(images), "GS": lambda: est_gs(images),
                        "LSQ": lambda: est_lsq(images)}, units=len(images), reference="LSQ", repeats=5)
    print("\n### 2. Time per estimate (4 measurements per call, 5 interleaved repeats, 1 thread)\n")
    print(markdown(rows, "estimates", "LSQ"), flush=True)


def budget_rows(args, optics, est_gs, start, noise):
    from astrolearn.cophasing.fit import crb, fisher, jacobian
    from astrolearn.cophasing.loop import initial_modes
    from astrolearn.cophasing.optics import observable
    from astrolearn.cophasing.simulate import render

    budgets = [float(b) for b in args.budgets.split(",")]
    cases = initial_modes(args.crb_cases, 50.0, 25.0, np.random.default_rng(args.seed + 7))  # cophasing.py section 3
    truth = observable(cases)
    jac = jacobian(optics, cases)
    print(f"\n### 3. Photon budgets: GS single-shot error / Cramer-Rao bound ({args.crb_cases} cases, pistons "
          f"U(+-50 nm), tip/tilt U(+-25 nm)); GS closed loop from the full prior ({args.budget_cases} cases)\n")
    print("| photons per image | CRB RMS [nm] | GS RMS error [nm] | GS / CRB (RMS; robust) | loop WFE after 1 "
          "[95 % CI] | after 2 [95 % CI] | < 15 nm goal (after 2) | share < 15 nm after 2 |")
    print("|---|---|---|---|---|---|---|---|")
    for b in budgets:
        bound = crb(fisher(optics, cases, b, noise["read_noise_e"], jac=jac))
        crb_rms = float(np.sqrt(np.mean(bound ** 2)))
        d = est_gs(render(optics, cases, b, noise, np.random.default_rng(int(b)))) - truth
        err = float(np.sqrt(np.mean(d ** 2)))
        wfe, _, _ = loop(optics, est_gs, start[:args.budget_cases], 2, b, noise, args.seed + 1)
        w1, w2 = bootstrap_median(wfe[:, 1]), bootstrap_median(wfe[:, 2])
        print(f"| {b:.0e} | {crb_rms:.2f} | {err:.2f} | {err / crb_rms:.1f}; {robust_ratio(d, bound):.1f} | "
              f"{fmt(w1)} | {fmt(w2)} | {verdict_below(w2, GOAL_NM)} | {np.mean(wfe[:, 2] < GOAL_NM):.2f} |",
              flush=True)


def wrapped_wfe(optics, residual, wavelength_nm) -> np.ndarray:
    """WFE [nm] of residuals (N, n_modes), each petal's piston relative to petal 1 taken modulo the wavelength."""
    r = np.array(residual, dtype=np.float64)
    k = optics.n_petals
    rel = r[:, :k] - r[:, :1]
    r[:, :k] = rel - wavelength_nm * np.round(rel / wavelength_nm)
    return optics.wfe_nm(r)


def capture_rows(args, optics, noise):
    from astrolearn.cophasing.gs import GsEstimator
    from astrolearn.cophasing.loop import initial_modes, run_loop
    from astrolearn.cophasing.optics import Optics

    amps = [float(a) for a in args.capture_amplitudes.split(",")]
    sensors = {"GS broadband + diversity": optics.to_dict(),
               "GS broadband, no diversity": {**optics.to_dict(), "diversity_nm": 0.0},
               "GS 650 nm + diversity": {**optics.to_dict(), "wavelengths_nm": [650.0]},
               "GS 650 nm, no diversity": {**optics.to_dict(), "wavelengths_nm": [650.0], "diversity_nm": 0.0}}
    print(f"\n### 4. Capture range: share of cases with WFE < 15 nm after 2 corrections, pistons only U(+-A), "
          f"{args.photons:.0e} e-, {args.capture_cases} cases per cell (650 nm: in brackets, pistons modulo 650 nm)\n")
    print("| sensor | " + " | ".join(f"A = {a:.0f} nm" for a in amps) + " |")
    print("|---|" + "---|" * len(amps))
    for name, spec in sensors.items():
        o = Optics.from_dict(spec)
        gs = GsEstimator(o, iterations=args.gs_iterations)
        cells = []
        for a in amps:
            pist = initial_modes(args.capture_cases, a, 0.0, np.random.default_rng(args.seed + int(a)))
            r = run_loop(o, gs.estimate, pist, 2, args.photons, noise, np.random.default_rng(args.seed + 5))
            cell = f"{np.mean(o.wfe_nm(r['residual'][2]) < GOAL_NM):.2f}"
            if len(o.wavelengths_nm) == 1:
                cell += f" ({np.mean(wrapped_wfe(o, r['residual'][2], o.wavelengths_nm[0]) < GOAL_NM):.2f})"
            cells.append(cell)
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
