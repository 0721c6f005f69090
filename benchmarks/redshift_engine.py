"""Benchmark: astrolearn redshift engine vs redrock on simulated NISP spectra (CPU).

Simulates NISP red-grism spectra (``astrolearn.redshift.simulate``), estimates their redshifts
with the astrolearn engine over the default grid (z 0.01-3.0, step 1e-4 in ln(1+z), 13764
redshifts) and, on a subset, with redrock (PyPI ``redrock``) given the same model family: our
5 continuum templates + the 15 emission-line groups as redrock "NMF" (non-negative) basis
vectors, the NISP Gaussian LSF as redrock's resolution matrix and the same redshift grid.
Reports spectra/s (wall clock and CPU time) and success rates |dz|/(1+z) < 0.003.

Usage::

    python benchmarks/redshift_engine.py --n 1000 --redrock-n 40 --out /tmp/bench.json

The machine is shared: the load average is recorded with each timing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def simulate(n: int, seed: int):
    from astrolearn.redshift.simulate import TRUTH_COLUMNS, NispConfig, simulate_batch

    cfg = NispConfig()
    flux, noise, params = simulate_batch(cfg, np.random.default_rng([seed, 0]), n)
    truth = {c: params[:, i] for i, c in enumerate(TRUTH_COLUMNS)}
    return cfg, flux.astype(np.float64), 1.0 / noise.astype(np.float64) ** 2, truth


def success(z, zt, tol=0.003):
    return np.isfinite(z) & (np.abs(z - zt) / (1 + zt) < tol)


def run_astrolearn(cfg, flux, ivar, workers: int, stride="auto"):
    import torch

    from astrolearn.redshift.engine import EngineConfig, RedshiftEngine, lsf_sigma_from_resolution

    wave = cfg.wave
    eng = RedshiftEngine(wave, lsf_sigma_from_resolution(wave, cfg.resolution),
                         EngineConfig(workers=workers, stride=stride))
    t0 = time.perf_counter()
    eng.run(flux[:64], ivar[:64])  # warm-up: numba kernel load, design caches (one-off per run)
    setup = time.perf_counter() - t0
    torch.set_num_threads(1 if workers > 1 else torch.get_num_threads())
    load0 = load_average()
    t0, c0 = time.perf_counter(), time.process_time()
    res = eng.run(flux, ivar)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"workers": workers, "stride": eng.stride, "n": len(flux), "wall_s": wall, "cpu_s": cpu,
            "spectra_per_s": len(flux) / wall, "cpu_ms_per_spectrum": 1e3 * cpu / len(flux),
            "setup_s": setup, "load_avg_before": load0, "load_avg_after": load_average(), "z": res.z}


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


def run_redrock(cfg, flux, ivar, mp_procs: int = 1):
    import warnings

    from redrock.targets import DistTargetsCopy, Spectrum, Target
    from redrock.templates import DistTemplate
    from redrock.zfind import zfind

    wave = cfg.wave
    R = nisp_resolution_matrix(wave, cfg.resolution)
    targets = [Target(i, [Spectrum(wave, flux[i], ivar[i], R, band="nisp")]) for i in range(len(flux))]
    dtargets = DistTargetsCopy(targets)
    tpl = redrock_templates(cfg.resolution)
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dtemplates = [DistTemplate(tpl, dtargets.wavegrids(), mp_procs=mp_procs)]
        _, zfit = zfind(dtargets, dtemplates, mp_procs=mp_procs, nminima=3)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    zfit = zfit[zfit["znum"] == 0]
    zfit.sort("targetid")
    return {"n": len(flux), "wall_s": wall, "cpu_s": cpu, "spectra_per_s": len(flux) / wall,
            "mp_procs": mp_procs, "z": np.asarray(zfit["z"], dtype=float)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="spectra for the astrolearn timing")
    ap.add_argument("--redrock-n", type=int, default=40, help="spectra run through redrock (0: skip)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default=None, help="JSON results file")
    args = ap.parse_args(argv)

    cfg, flux, ivar, truth = simulate(args.n, args.seed)
    zt = truth["z"]
    report = {"n": args.n, "seed": args.seed, "cpus": os.cpu_count(), "astrolearn": [], "redrock": None}
    for w in args.workers:
        r = run_astrolearn(cfg, flux, ivar, w)
        ok = success(r.pop("z"), zt)
        r["success_rate"] = float(ok.mean())
        r["success_rate_halpha_in_window"] = float(ok[(zt > 0.84) & (zt < 1.88) & (truth["has_lines"] > 0)].mean())
        report["astrolearn"].append(r)
        print(json.dumps(r))
    if args.redrock_n:
        try:
            import redrock  # noqa: F401
        except ImportError as exc:
            report["redrock"] = {"error": f"redrock not importable: {exc}"}
        else:
            n = args.redrock_n
            rr = run_redrock(cfg, flux[:n], ivar[:n])
            ok_rr = success(rr.pop("z"), zt[:n])
            al = run_astrolearn(cfg, flux[:n], ivar[:n], 1)
            ok_al = success(al.pop("z"), zt[:n])
            rr["success_rate"] = float(ok_rr.mean())
            rr["astrolearn_success_same_spectra"] = float(ok_al.mean())
            rr["astrolearn_spectra_per_s_same_spectra"] = al["spectra_per_s"]
            report["redrock"] = rr
            print(json.dumps(rr))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)
    return report


if __name__ == "__main__":
    main()
