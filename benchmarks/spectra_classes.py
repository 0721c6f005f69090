"""Star / galaxy / QSO classification: CNN vs template evidence vs random forest, throughput, real spectra.

    python benchmarks/spectra_classes.py --grid nisp --n 20000 --n-evidence 3000 --rf runs/spectra-nisp
    python benchmarks/spectra_classes.py --grid optical --n 10000 --n-evidence 1000 --rf runs/spectra-optical --real

Held-out spectra are simulated with a seed the training never used (no truncation). Written to
``--out`` (default ``benchmarks/spectra_classes/<grid>``): ``confusion.csv``/``.md``,
``purity_completeness.csv``/``.png`` (CNN and random forest on all held-out spectra, prefix
``all_``; the three methods on the evidence subset, prefix ``evidence_subset_``), ``goal.md``,
``throughput.md`` and, with ``--real``, ``real.md`` / ``real.csv``. Every row is printed, with the calibration of the CNN probabilities (reliability per class, ECE).

Goal subset: continuum S/N per pixel >= 3 or emission-line S/N >= 5. Intervals: 95 % bootstrap
(1000 resamplings of the spectra). A goal is met only when the interval's lower end clears 0.99.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import commit, compare, machine, markdown, results_marker, threads  # noqa: E402

from astrolearn.errors import UserError  # noqa: E402
from astrolearn.spectra.evaluate import confusion, purity_completeness, write_reports  # noqa: E402
from astrolearn.spectra.simulate import CLASSES, TRUTH_COLUMNS, SpectraConfig, simulate_batch, star_library  # noqa: E402

CODE = ["astrolearn/spectra/classifier.py", "astrolearn/spectra/evaluate.py", "astrolearn/spectra/evidence.py",
        "astrolearn/spectra/simulate.py",
        "astrolearn/spectra/qso.py", "astrolearn/spectra/train.py", "benchmarks/spectra_classes.py",
        # the shipped weights and calibrations measured
        "astrolearn/spectra/models/nisp", "astrolearn/spectra/models/optical"]
GOAL = 0.99


def bootstrap(true, pred, n_boot=1000, seed=0):
    """95 % intervals (2, 3) of purity and of completeness per class."""
    rng = np.random.default_rng(seed)
    pur, comp = [], []
    for _ in range(n_boot):
        i = rng.integers(0, len(true), len(true))
        p, c = purity_completeness(true[i], pred[i])
        pur.append(p)
        comp.append(c)
    return np.nanpercentile(pur, [2.5, 97.5], axis=0), np.nanpercentile(comp, [2.5, 97.5], axis=0)


def completeness_at_purity(true, probs, k, purity):
    """Completeness of class k when keeping the spectra of highest p_k while purity >= ``purity``."""
    order = np.argsort(-probs[:, k], kind="stable")
    hit = (true[order] == k).astype(float)
    prec = np.cumsum(hit) / np.arange(1, len(hit) + 1)
    ok = np.flatnonzero(prec >= purity)
    return 0.0 if not ok.size else float(np.cumsum(hit)[ok[-1]] / max(hit.sum(), 1))


def simulate_held_out(grid, n, seed):
    cfg = SpectraConfig(grid=grid, truncate_fraction=0.0)
    lib = star_library(cfg)
    parts = [simulate_batch(cfg, np.random.default_rng([seed, i]), min(2000, n - i * 2000), first_id=i * 2000,
                            library=lib) for i in range(-(-n // 2000))]
    flux, noise, params = (np.concatenate(p) for p in zip(*parts))
    truth = {c: params[:, i] for i, c in enumerate(TRUTH_COLUMNS)}
    return cfg, flux, noise, truth


def goal_table(name, true, pred, good):
    rows = []
    pur, comp = purity_completeness(true[good], pred[good])
    (plo, phi), (clo, chi) = bootstrap(true[good], pred[good])
    for k, c in enumerate(CLASSES):
        met = "met" if plo[k] >= GOAL and clo[k] >= GOAL else "not met"
        rows.append(f"| {name} | {c} | {int(np.sum(true[good] == k))} | {pur[k]:.4f} ({plo[k]:.4f}-{phi[k]:.4f}) | "
                    f"{comp[k]:.4f} ({clo[k]:.4f}-{chi[k]:.4f}) | {met} |")
    return rows


def calibration_rows(true, probs_by_name):
    """Reliability of each class probability (one class against the rest) on the held-out spectra."""
    from astrolearn.redshift.calibration import calibration_table, ece_interval

    rows = ["| probabilities | class | ECE (95 % interval) | bins with >= 50 spectra | within 0.05 of the observed rate "
            "| largest gap |", "|---|---|---|---|---|---|"]
    for name, probs in probs_by_name.items():
        for k, c in enumerate(CLASSES):
            table = [r for r in calibration_table(probs[:, k], true == k) if r["tested"]]
            ece, lo, hi = ece_interval(probs[:, k], true == k, n_boot=200)
            gap = max(abs(r["observed"] - r["predicted"]) for r in table)
            rows.append(f"| {name} | {c} | {ece:.4f} ({lo:.4f}-{hi:.4f}) | {len(table)} | "
                        f"{sum(r['within'] for r in table)} | {gap:.3f} |")
    return rows


def real_agreement(out: Path, shared: Path):
    """Classify the real spectra of realspec/truth.csv and desi/ with the model of their range."""
    from astrolearn.redshift import io as rio
    from astrolearn.spectra.classifier import SpectraClassifier

    models = {"nisp": SpectraClassifier("nisp"), "optical": SpectraClassifier("optical")}
    entries = []
    with open(shared / "realspec" / "truth.csv") as f:
        for r in csv.DictReader(f):
            row = int(r["row"]) if r["row"].strip().isdigit() else 0
            entries.append((shared / "realspec" / r["file"], row, r["class"].strip(), r["survey"]))
    for name in ("coadd-4-80613-thru20210324.fits", "coadd-special-dark-27247.fits"):
        entries.append((shared / "desi" / name, 0, "GALAXY", "DESI (shared/desi, redrock)"))
    cache, results = {}, []
    for path, row, cls, survey in entries:
        if path not in cache:
            try:
                sp = rio.open_input(path, 100000)[0].load()
                model = "nisp" if np.median(sp.wave) > 10000 else "optical"
                cache[path] = (model, models[model].predict(sp.wave, sp.flux, sp.ivar, where=path.name), None)
            except UserError as exc:
                cache[path] = (model if "model" in dir() else "?", None, str(exc))
        model, probs, err = cache[path]
        if probs is None:
            results.append((path.name, row, survey, cls, model, "refused", "", err))
        else:
            p = probs[min(row, len(probs) - 1)]
            results.append((path.name, row, survey, cls, model, CLASSES[int(p.argmax())], f"{p.max():.3f}", ""))
    with open(out / "real.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "row", "survey", "pipeline_class", "model", "predicted", "p_max", "refused_because"])
        w.writerows(results)
    lines = ["| pipeline class | spectra | classified | refused (outside the model's range) | agree | agreement |",
             "|---|---|---|---|---|---|"]
    for c in CLASSES:
        sel = [r for r in results if r[3] == c]
        done = [r for r in sel if r[5] != "refused"]
        agree = sum(r[5] == c for r in done)
        lines.append(f"| {c} | {len(sel)} | {len(done)} | {len(sel) - len(done)} | {agree} | "
                     f"{agree / max(len(done), 1):.2f} |")
    return results, lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", choices=("nisp", "optical"), default="nisp")
    ap.add_argument("--n", type=int, default=20000, help="held-out spectra (CNN, random forest)")
    ap.add_argument("--n-evidence", type=int, default=3000, help="of which the evidence baseline classifies")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--model", default=None, help="CNN (default: the shipped model of --grid)")
    ap.add_argument("--rf", required=True, help="training run directory holding baseline_rf.pkl")
    ap.add_argument("--out", default=None)
    ap.add_argument("--real", action="store_true", help="also classify the real spectra of ../shared/data")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from astrolearn.spectra.classifier import SpectraClassifier, network_input
    from astrolearn.spectra.evidence import class_engines, evidence_probs
    from astrolearn.spectra.train import binned, load_rf
    from astrolearn.redshift.templates import FWHM_SIGMA

    out = Path(args.out or Path(__file__).with_name("spectra_classes") / args.grid)
    out.mkdir(parents=True, exist_ok=True)
    print(results_marker(f"spectra_classes_{args.grid}", CODE))
    print(f"commit {commit()}; machine {machine()} (2-core VM shared with other jobs)")
    cfg, flux, noise, truth = simulate_held_out(args.grid, args.n, args.seed)
    ivar = 1.0 / noise.astype(np.float64) ** 2
    true = truth["label"].astype(int)
    good = (truth["snr_cont"] >= 3) | (truth["snr_line"] >= 5)
    print(f"held-out: {len(true)} spectra ({', '.join(f'{c} {np.sum(true == k)}' for k, c in enumerate(CLASSES))}); "
          f"goal subset {good.sum()}")
    clf = SpectraClassifier(args.model or args.grid)
    with threads(args.threads):
        x = network_input(flux, ivar)
        logits = clf.logits(x)
        p_cnn = clf.calibration(logits)
    # throughput first, before the long evidence baseline: network input + CNN on 8192 spectra, and the CNN alone
    xs, fs, ivs = x[:8192], flux[:8192], ivar[:8192]
    rows = []
    for nt in sorted({1, args.threads}):
        with threads(nt):
            rows += compare({f"cnn, {nt} thread(s)": lambda: clf.logits(xs),
                             f"input + cnn, {nt} thread(s)": lambda: clf.logits(network_input(fs, ivs))},
                            units=len(xs), repeats=5)
    tp = markdown(rows, "spectra", rows[0]["method"])
    (out / "throughput.md").write_text(tp + "\n")
    print(tp)
    rf = load_rf(args.rf)
    p_rf = rf["model"].predict_proba(binned(x, rf["bins"]))
    pred = {"cnn": p_cnn.argmax(1), "random_forest": p_rf.argmax(1)}
    files = write_reports(out, pred, truth, prefix="all_")
    ne = min(args.n_evidence, len(true))
    gcfg = cfg.galaxy_config()
    with threads(args.threads):
        engines = class_engines(cfg.wave, cfg.wave / (gcfg.resolution * FWHM_SIGMA), args.grid == "optical",
                                pixel_width=np.full(cfg.wave.size, gcfg.dw))
        p_ev = np.concatenate([evidence_probs(engines, flux[i:min(i + 500, ne)], ivar[i:min(i + 500, ne)])
                               for i in range(0, ne, 500)])
    sub = {k: v[:ne] for k, v in truth.items()}
    files += write_reports(out, {"cnn": pred["cnn"][:ne], "evidence": p_ev.argmax(1),
                                 "random_forest": pred["random_forest"][:ne]}, sub, prefix="evidence_subset_")
    goal = ["| method | class | spectra (goal subset) | purity (95 % interval) | completeness (95 % interval) | "
            "goal 0.99 |", "|---|---|---|---|---|---|"]
    goal += goal_table("cnn", true, pred["cnn"], good)
    goal += goal_table("random forest", true, pred["random_forest"], good)
    goal += goal_table(f"evidence (first {ne})", true[:ne], p_ev.argmax(1), good[:ne])
    eq = ["| class | evidence purity | evidence completeness | CNN completeness at that purity | "
          "random forest completeness at that purity |", "|---|---|---|---|---|"]
    g = good[:ne]
    for k, c in enumerate(CLASSES):
        pur, comp = purity_completeness(true[:ne][g], p_ev.argmax(1)[g])
        eq.append(f"| {c} | {pur[k]:.4f} | {comp[k]:.4f} | "
                  f"{completeness_at_purity(true[:ne][g], p_cnn[:ne][g], k, pur[k]):.4f} | "
                  f"{completeness_at_purity(true[:ne][g], p_rf[:ne][g], k, pur[k]):.4f} |")
    raw = np.exp(logits - logits.max(axis=1, keepdims=True))
    cal = calibration_rows(true, {"cnn, softmax": raw / raw.sum(axis=1, keepdims=True), "cnn, calibrated": p_cnn})
    goal += ["", f"calibration, all {len(true)} held-out spectra (10 equal-width bins):", ""] + cal
    conf = [f"confusion, all {len(true)} held-out spectra:", "", "```"]
    for name, p in pred.items():
        conf.append(f"{name}: rows true {CLASSES}, columns predicted\n{confusion(true, p)}")
    conf.append(f"evidence (first {ne}):\n{confusion(true[:ne], p_ev.argmax(1))}")
    conf.append("```")
    (out / "goal.md").write_text("\n".join(goal + [""] + eq + [""] + conf) + "\n")
    print("\n".join(goal + [""] + eq + [""] + conf))
    if args.real:
        shared = Path(__file__).resolve().parents[2] / "shared" / "data"
        results, lines = real_agreement(out, shared)
        for r in results:
            print(" | ".join(str(v) for v in r))
        (out / "real.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
    print("wrote", ", ".join(str(p) for p in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
