"""Real-spectra benchmark: ``astrolearn redshift run`` on every file of ``realspec/`` (issue 14, section 2).

Each file listed in ``truth.csv`` is given on its own to ``astrolearn redshift run FILE --out
OUT/runs/NAME --workers 1`` (the CLI's entry point, in this process: estimate on the shipped
reliability model's grid, z 0.01-3.0, then ``p_success``). Each truth row (one per object;
multi-object files give one row per object in input order) is compared with the pipeline
redshift: agreement is ``|z - z_pipe| < tol (1 + z_pipe)`` (tol 0.003).

Printed and written to ``OUT/report.md`` (and one row per object to ``OUT/real_spectra.csv``):

- a table per survey and class: n, agreement rate with its 95 % Clopper-Pearson interval,
  median |dz|/(1+z), and the share of disagreements flagged (``p_success < 0.5``);
- the goal line: agreement on the confident (``z_ok = 1``) galaxies whose pipeline redshift
  lies in the engine's grid, met only if the interval's lower bound clears 95 %;
- every disagreement with its chi2 difference, chi2(engine z) - chi2(pipeline z), from a
  float64 NNLS refit of the engine's model (continuum templates + line groups, the run's LSF)
  at both redshifts (negative: the engine's redshift fits the data better than the pipeline's
  within the model), and its ``p_success``.

Usage (about 3-5 min on one core)::

    OMP_NUM_THREADS=1 python benchmarks/real_spectra.py --data ../shared/data/realspec --out runs/real_spectra
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measured import CLI, ENGINE, RELIABILITY, made_by, reusable  # noqa: E402
from timing import commit, machine, results_marker  # noqa: E402

#: The code the printed result measures (benchmarks/check_results.py).
MEASURED = [*ENGINE, *CLI, *RELIABILITY, "benchmarks/real_spectra.py"]
TOL = 0.003
FLAG = 0.5


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of a rate k/n."""
    from scipy.stats import beta

    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def run_file(path: Path, out: Path, workers: int) -> tuple[int, str, float]:
    """``astrolearn redshift run PATH --out OUT``: exit code, stderr, seconds (reused if made by this code)."""
    from astrolearn.cli import main

    code = [*ENGINE, *CLI, *RELIABILITY]
    if (out / "reliability.csv").is_file() and reusable(out, code):
        return 0, "", 0.0
    err = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err):
        rc = main(["redshift", "run", str(path), "--out", str(out), "--workers", str(workers), "--no-progress",
                   "--overwrite"])
    if rc == 0:
        made_by(out, code)
    return rc, err.getvalue().strip(), time.perf_counter() - t0


def chi2_at(path: Path, rows, zs) -> np.ndarray:
    """chi2 of the float64 NNLS fit of the engine's model at each (row, z), LSF as in the run."""
    from scipy.optimize import nnls

    from astrolearn.redshift import io as rio
    from astrolearn.redshift.engine import SpectralModel, lsf_sigma_from_resolution
    from astrolearn.redshift.estimate import DEFAULT_R_NIR, DEFAULT_R_OPT

    chunks = rio.open_input(path)
    spectra = [c.load() for c in chunks]
    sp = spectra[0]
    flux = np.concatenate([s.flux for s in spectra])
    ivar = np.concatenate([s.ivar for s in spectra])
    lsf = sp.lsf_sigma
    if lsf is None:
        lsf = lsf_sigma_from_resolution(sp.wave, DEFAULT_R_NIR if np.median(sp.wave) > 9000 else DEFAULT_R_OPT)
    model = SpectralModel(sp.wave, lsf, sp.pixel_width)
    out = []
    for r, z in zip(rows, zs):
        A, _ = model.matrix(float(z))
        s = np.sqrt(ivar[r])
        x, _ = nnls(A * s[:, None], flux[r] * s, maxiter=50 * A.shape[1])
        out.append(float((((flux[r] - A @ x) * s) ** 2).sum()))
    return np.array(out)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fmt_rate(k: int, n: int) -> str:
    if n == 0:
        return "-"
    lo, hi = clopper_pearson(k, n)
    return f"{k}/{n} = {k / n:.2f} [{lo:.2f}, {hi:.2f}]"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "realspec"))
    ap.add_argument("--out", default="runs/real_spectra")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--tol", type=float, default=TOL)
    args = ap.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    truth = read_csv(data / "truth.csv")
    files = list(dict.fromkeys(r["file"] for r in truth))
    files += sorted(str(p.relative_to(data)) for p in data.glob("*/*.fits*") if str(p.relative_to(data)) not in files)

    results, refused, seconds = {}, {}, {}
    for f in files:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f)
        rc, err, dt = run_file(data / f, out / "runs" / name, args.workers)
        seconds[f] = dt
        if rc != 0:
            refused[f] = err
            print(f"{f}: exit {rc}: {err}", flush=True)
            continue
        results[f] = read_csv(out / "runs" / name / "reliability.csv")
        print(f"{f}: {len(results[f])} spectra in {dt:.1f} s", flush=True)

    from astrolearn.redshift.reliability.classifier import ReliabilityModel

    grid = ReliabilityModel(None).grid
    zmin, zmax = float(grid.z[0]), float(grid.z[-1])
    rows = []
    by_file: dict = {}
    for t in truth:
        f = t["file"]
        if f not in results:
            continue
        idx = int(t["row"]) if t["row"].isdigit() else 0  # object row; APOGEE "0-2 (chips)" is one spectrum
        e = results[f][idx]
        zt, ze = float(t["z"]), float(e["z"])
        rows.append({"file": f, "row": idx, "survey": t["survey"], "class": t["class"], "z_ok": t["z_ok"] == "1",
                     "z_pipe": zt, "z": ze, "dz": (ze - zt) / (1 + zt), "z_proba": float(e["z_proba"]),
                     "p_success": float(e["p_success"]), "in_range": zmin <= zt <= zmax})
        by_file.setdefault(f, []).append(len(rows) - 1)
    for r in rows:
        r["agree"] = abs(r["dz"]) < args.tol
        r["flagged"] = r["p_success"] < FLAG
        r["dchi2"] = float("nan")
    for f, ids in by_file.items():
        bad = [i for i in ids if not rows[i]["agree"]]
        if bad:
            c = chi2_at(data / f, [rows[i]["row"] for i in bad] * 2,
                        [rows[i]["z"] for i in bad] + [rows[i]["z_pipe"] for i in bad])
            for j, i in enumerate(bad):
                rows[i]["dchi2"] = c[j] - c[j + len(bad)]

    lines = ["| survey | class | n | agreement [95 % CI] | median abs(dz)/(1+z) | median p_success | "
             "disagreements flagged (p_success < 0.5) |", "|---|---|---|---|---|---|---|"]
    groups = sorted({(r["survey"], r["class"]) for r in rows})
    for key in groups + [("all", "all")]:
        g = [r for r in rows if key == ("all", "all") or (r["survey"], r["class"]) == key]
        k = sum(r["agree"] for r in g)
        dis = [r for r in g if not r["agree"]]
        lines.append(f"| {key[0]} | {key[1]} | {len(g)} | {fmt_rate(k, len(g))} | "
                     f"{np.median([abs(r['dz']) for r in g]):.2g} | {np.median([r['p_success'] for r in g]):.2f} | "
                     f"{sum(r['flagged'] for r in dis)}/{len(dis)} |")
    for cls in ("GALAXY", "QSO", "STAR"):
        g = [r for r in rows if r["class"] == cls]
        if not g:
            continue
        dis = [r for r in g if not r["agree"]]
        lines.append(f"| all | {cls} | {len(g)} | {fmt_rate(sum(r['agree'] for r in g), len(g))} | "
                     f"{np.median([abs(r['dz']) for r in g]):.2g} | {np.median([r['p_success'] for r in g]):.2f} | "
                     f"{sum(r['flagged'] for r in dis)}/{len(dis)} |")

    for r in rows:
        r["goal"] = r["class"] == "GALAXY" and r["z_ok"] and r["in_range"]
    goal = [r for r in rows if r["goal"]]
    k = sum(r["agree"] for r in goal)
    lo, hi = clopper_pearson(k, len(goal)) if goal else (0.0, 0.0)
    gdis = [r for r in goal if not r["agree"]]
    nflag = sum(r["flagged"] for r in gdis)
    goal_lines = [
        f"Goal set: confident (z_ok = 1) galaxies with pipeline z in the engine's grid [{zmin:g}, {zmax:g}]: "
        f"{len(goal)} of {sum(r['class'] == 'GALAXY' for r in rows)} galaxies.",
        f"Agreement (|dz| < {args.tol:g} (1+z)): {fmt_rate(k, len(goal))} (95 % Clopper-Pearson); "
        f"goal >= 0.95: {'met' if lo >= 0.95 else 'NOT met'} (lower bound {lo:.3f}).",
        f"Disagreements flagged (p_success < {FLAG}): {nflag}/{len(gdis)} "
        f"({'majority' if gdis and nflag > len(gdis) / 2 else 'not a majority' if gdis else 'none to flag'}); "
        f"all classes: {sum(r['flagged'] for r in rows if not r['agree'])}/{sum(not r['agree'] for r in rows)}.",
        f"Agreements flagged (p_success < {FLAG}) among the goal set: "
        f"{sum(r['flagged'] for r in goal if r['agree'])}/{k}.",
    ]
    fail_lines = ["| file | row | survey | class | z pipeline | z engine | dz/(1+z) | "
                  "chi2(z engine) - chi2(z pipeline) | p_success | in goal set |", "|---" * 10 + "|"]
    for r in rows:
        if not r["agree"]:
            fail_lines.append(f"| {r['file']} | {r['row']} | {r['survey']} | {r['class']} | {r['z_pipe']:.5f} | "
                              f"{r['z']:.5f} | {r['dz']:+.4f} | {r['dchi2']:.1f} | {r['p_success']:.3f} | "
                              f"{'yes' if r['goal'] else 'no'} |")
    ref_lines = [f"- `{f}`: {e}" for f, e in refused.items()]
    total = sum(seconds.values())
    text = "\n".join(["# Real spectra: astrolearn redshift run vs pipeline redshifts", "",
                      results_marker("real_spectra", MEASURED),
                      f"{len(rows)} spectra from {len(results)} files, tolerance |dz| < {args.tol:g} (1+z), "
                      f"grid z {zmin:g}-{zmax:g}; commit {commit()}; run time {total:.0f} s (this invocation); "
                      f"{machine()}.", "",
                      "## Per survey and class", "", *lines, "", "## Goal", "", *goal_lines, "",
                      "## Disagreements", "", *fail_lines, "", "## Files refused", "", *(ref_lines or ["none"]), ""])
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    keys = ["file", "row", "survey", "class", "z_ok", "in_range", "z_pipe", "z", "dz", "agree", "z_proba",
            "p_success", "flagged", "dchi2"]
    with open(out / "real_spectra.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(text)
    print(f"wrote {out / 'report.md'} and {out / 'real_spectra.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
