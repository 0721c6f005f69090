"""Benchmark: astrolearn redshift engine vs redrock on simulated NISP spectra (CPU).

Simulates NISP red-grism spectra (``astrolearn.redshift.simulate``), estimates their redshifts
with the astrolearn engine over the default grid (z 0.01-3.0, step 1e-4 in ln(1+z), 13764
redshifts) and, on a subset, with redrock (PyPI ``redrock``) given the same model family: our
5 continuum templates + the emission-line groups as redrock "NMF" (non-negative) basis
vectors, the NISP Gaussian LSF as redrock's resolution matrix and the same redshift grid.

Timings go through ``benchmarks/timing.py`` (one warm-up call, then ``--repeats`` interleaved
rounds; median and range), the torch and BLAS pools held to one thread so that the engine's
worker threads are the only parallelism. Printed: a result marker, the machine and its load,
one table of seconds, spectra/s and CPU ms per spectrum (``time.process_time`` over all timed
calls) per method, and success rates |dz|/(1+z) < 0.003 with 95 % Wilson intervals.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/redshift_engine.py --n 400 --redrock-n 8
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measured import ENGINE, SIMULATOR  # noqa: E402
from timing import commit, compare, machine, results_marker, threads  # noqa: E402

#: The code the printed result measures (benchmarks/check_results.py).
MEASURED = [*ENGINE, *SIMULATOR, "benchmarks/redshift_engine.py"]


def simulate(n: int, seed: int):
    from astrolearn.redshift.simulate import TRUTH_COLUMNS, NispConfig, simulate_batch

    cfg = NispConfig()
    flux, noise, params = simulate_batch(cfg, np.random.default_rng([seed, 0]), n)
    truth = {c: params[:, i] for i, c in enumerate(TRUTH_COLUMNS)}
    return cfg, flux.astype(np.float64), 1.0 / noise.astype(np.float64) ** 2, truth


def success(z, zt, tol=0.003):
    return np.isfinite(z) & (np.abs(z - zt) / (1 + zt) < tol)


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of a rate k/n."""
    zc, p = 1.959964, k / n
    mid, half = p + zc**2 / (2 * n), zc * math.sqrt(p * (1 - p) / n + zc**2 / (4 * n**2))
    return (mid - half) / (1 + zc**2 / n), (mid + half) / (1 + zc**2 / n)


def engine(cfg, workers: int, stride="auto"):
    from astrolearn.redshift.engine import EngineConfig, RedshiftEngine, lsf_sigma_from_resolution

    wave = cfg.wave
    return RedshiftEngine(wave, lsf_sigma_from_resolution(wave, cfg.resolution),
                          EngineConfig(workers=workers, stride=stride))


class Timed:
    """A method for :func:`timing.compare` that keeps its last redshifts and its CPU seconds."""

    def __init__(self, run):
        self.run, self.cpu, self.calls, self.z = run, 0.0, 0, None

    def __call__(self):
        c0 = time.process_time()
        self.z = self.run()
        self.cpu += time.process_time() - c0
        self.calls += 1


def table(rows, methods: dict, units: int, zt) -> str:
    lines = ["| method | s per call: median (min-max) | spectra/s: median (range) | CPU ms / spectrum | "
             "success [95 % Wilson] |", "|---|---|---|---:|---|"]
    for r in rows:
        m = methods[r["method"]]
        ok = success(m.z, zt)
        lo, hi = wilson(int(ok.sum()), ok.size)
        rlo, rhi = r["rate_range"]
        lines.append(f"| {r['method']} | {r['median_s']:.4g} ({r['min_s']:.4g}-{r['max_s']:.4g}) | "
                     f"{r['rate']:.4g} ({rlo:.4g}-{rhi:.4g}) | {1e3 * m.cpu / (m.calls * units):.1f} | "
                     f"{ok.mean():.3f} [{lo:.3f}, {hi:.3f}] |")
    return "\n".join(lines)


def redrock_templates(resolution: float, vdisp: float = 100.0):
    """Our continuum templates + line groups as one redrock NMF template (rest frame)."""
    from redrock.templates import Template

    from astrolearn.redshift.lines import DEFAULT_GROUPS
    from astrolearn.redshift.templates import load_templates

    tpl = load_templates()
    step = 1e-4
    lnw = np.arange(math.log(900.0), math.log(26000.0), step)
    wave = np.exp(lnw)
    basis = [np.interp(lnw, tpl.loglam, f) for f in tpl.flux]
    sig_ln = vdisp / 299792.458
    for g in DEFAULT_GROUPS:
        ratios = np.asarray(g.ratios) / np.sum(g.ratios)
        prof = np.zeros_like(wave)
        for lam, r in zip(g.wavelengths, ratios):
            sig = lam * sig_ln
            prof += r * np.exp(-0.5 * ((wave - lam) / sig) ** 2) / (math.sqrt(2 * math.pi) * sig)
        basis.append(prof * 1e3)  # arbitrary scale (coefficients are free)
    from astrolearn.redshift.pdf import ZGrid

    z = ZGrid().z
    return Template(spectype="GALAXY", redshifts=z, wave=wave, flux=np.asarray(basis), subtype="ASTROLEARN",
                    method="NMF", igm_model="None", version="astrolearn")


def nisp_resolution_matrix(wave, resolution: float, half: int = 6):
    """Banded Gaussian LSF (rows normalised) as a scipy sparse matrix, redrock's R."""
    import scipy.sparse as sp

    M = wave.size
    sig = wave / (resolution * 2.3548)
    rows, cols, vals = [], [], []
    for i in range(M):
        j = np.arange(max(0, i - half), min(M, i + half + 1))
        k = np.exp(-0.5 * ((wave[j] - wave[i]) / sig[i]) ** 2)
        k /= k.sum()
        rows += [i] * len(j)
        cols += list(j)
        vals += list(k)
    return sp.csr_matrix((vals, (rows, cols)), shape=(M, M))


def redrock_method(cfg, flux, ivar):
    """A call running redrock's ``zfind`` on ``flux`` (templates rebinned once, outside the call)."""
    import warnings

    from redrock.targets import DistTargetsCopy, Spectrum, Target
    from redrock.templates import DistTemplate
    from redrock.zfind import zfind

    wave = cfg.wave
    R = nisp_resolution_matrix(wave, cfg.resolution)
    targets = DistTargetsCopy([Target(i, [Spectrum(wave, flux[i], ivar[i], R, band="nisp")])
                               for i in range(len(flux))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        templates = [DistTemplate(redrock_templates(cfg.resolution), targets.wavegrids(), mp_procs=1)]

    def run():
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # its progress log
            warnings.simplefilter("ignore")
            _, zfit = zfind(targets, templates, mp_procs=1, nminima=3)
        zfit = zfit[zfit["znum"] == 0]
        zfit.sort("targetid")
        return np.asarray(zfit["z"], dtype=float)

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=400, help="spectra per call of the astrolearn timing")
    ap.add_argument("--redrock-n", type=int, default=8, help="spectra per call of redrock (0: skip)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    cfg, flux, ivar, truth = simulate(args.n, args.seed)
    zt = truth["z"]
    print(results_marker("redshift_engine", MEASURED))
    print(f"Commit {commit()}; {machine()}; {args.n} spectra (seed {args.seed}); torch and BLAS pools "
          f"1 thread, the engine's worker threads as stated; {args.repeats} interleaved rounds after 1 warm-up.\n")
    with threads(1):
        methods = {f"astrolearn, {w} worker{'s' if w > 1 else ''}, two-pass (stride 6, exact around the candidates)":
                   Timed(lambda e=engine(cfg, w): e.run(flux, ivar).z) for w in (1, 2)}
        methods["astrolearn, 1 worker, exact chi2 on all 13764 redshifts (stride 1)"] = \
            Timed(lambda e=engine(cfg, 1, stride=1): e.run(flux, ivar).z)
        rows = compare(methods, args.n, repeats=args.repeats)
        print(table(rows, methods, args.n, zt))
        if args.redrock_n:
            n = args.redrock_n
            sub = {"astrolearn, 1 worker, two-pass": Timed(lambda e=engine(cfg, 1): e.run(flux[:n], ivar[:n]).z),
                   "redrock (PyPI), same model as NMF basis, same grid, mp_procs=1":
                   Timed(redrock_method(cfg, flux[:n], ivar[:n]))}
            rows = compare(sub, n, repeats=args.repeats)
            print(f"\nThe first {n} of these spectra, astrolearn against redrock, 1 process each:\n")
            print(table(rows, sub, n, zt[:n]))
    print(f"\nEnd: {machine()}")


if __name__ == "__main__":
    main()
