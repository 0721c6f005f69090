"""Reliability evaluation on simulated spectra: CNN vs redshift probability vs descriptors + GBM.

For each method and class (``success``; with 3 classes also ``confusion`` and ``failure``, one
against the rest) the report gives purity and completeness against the threshold and against
each other, the ROC AUC, the threshold and completeness reaching purities 0.8, 0.9 and 0.95, and
whether the seed's operating point (purity > 0.8 with completeness > 0.45) is met. It adds the
CNN's reliability diagram, confusion matrices (3 classes), and the performance in bins of the
truth columns (Halpha flux, S/N).

The redshift probability ranks spectra for ``success`` only (it is no class probability for
confusions or failures).

Files written in the output directory: ``report.md``, ``scores.csv``, ``curves.csv``,
``thresholds.csv``, ``auc.csv``, ``calibration.csv``, ``binned.csv``, ``confusion.csv``
(3 classes) and the PNG figures the report shows.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...io.tables import write_csv
from ..evaluate import readable_log_axis
from .classifier import ReliabilityModel
from .curves import (
    PURITY_LEVELS,
    SEED_COMPLETENESS,
    SEED_PURITY,
    bootstrap_selection,
    purity_completeness,
    reliability_diagram,
    roc_auc,
    roc_curve,
)
from .dataset import Estimates
from .descriptors import zpdf_descriptors
from .labels import SUCCESS

METHOD_NAMES = {"cnn": "CNN", "z_proba": "redshift probability", "gbm": "descriptors + GBM"}
#: Truth columns binned by default, when present (the simulator's Halpha flux and S/N).
BY_DEFAULT = ("halpha_flux", "halpha_snr")
#: Points kept per curve in ``curves.csv`` (operating points are computed on the full curves).
CURVE_POINTS = 1000
#: Axis labels (with units) of the truth columns binned in the report.
BINNED_LABELS = {"halpha_flux": "true Halpha flux [erg/s/cm^2]", "halpha_snr": "true Halpha S/N (matched filter)"}


def method_scores(model: ReliabilityModel, estimates: Estimates, baseline: dict | None = None) -> tuple[dict, dict]:
    """Class probabilities of each method and the time each took.

    Returns
    -------
    scores : dict of str to ndarray
        ``cnn`` and ``gbm`` (N, C) probabilities in the model's class order; ``z_proba`` (N, 1),
        the engine's redshift probability (a score for ``success`` only).
    seconds : dict of str to float
        Wall time of each method on the whole set (PDF reading included).
    """
    scores, seconds = {}, {}
    t0 = time.perf_counter()
    scores["cnn"] = model.predict(estimates.log_pdf, estimates.grid, estimates.source)
    seconds["cnn"] = time.perf_counter() - t0
    scores["z_proba"] = np.nan_to_num(np.asarray(estimates.table["z_proba"], float), nan=0.0)[:, None]
    seconds["z_proba"] = 0.0
    if baseline is not None:
        if list(baseline["classes"]) != model.classes:
            raise ValueError(f"baseline classes {baseline['classes']} differ from the model's {model.classes}")
        t0 = time.perf_counter()
        x = zpdf_descriptors(estimates.log_pdf, estimates.grid)
        scores["gbm"] = baseline["model"].predict_proba(x)
        seconds["gbm"] = time.perf_counter() - t0
    return scores, seconds


def evaluate_reliability(model: ReliabilityModel, estimates: Estimates, out_dir, baseline: dict | None = None,
                         by=None, overwrite: bool = False, validation: Estimates | None = None) -> dict:
    """Write the reliability report of ``model`` on ``estimates`` (simulated, with truth).

    Parameters
    ----------
    model : ReliabilityModel
    estimates : Estimates
        Test set with truth; labelled with the model's scheme.
    out_dir : path-like
        Report directory.
    baseline : dict, optional
        The descriptors + GBM baseline (:func:`~astrolearn.redshift.reliability.train.load_baseline`).
    by : sequence of str, optional
        Truth columns to bin the performance by (default: those of :data:`BY_DEFAULT` present).
    overwrite : bool
        Replace existing report files.
    validation : Estimates, optional
        Validation set (with truth, not the test set): each method's threshold of purity 0.8 for
        ``success`` is chosen on it, then applied to ``estimates``, with bootstrap intervals
        (``held_out.csv``, and the report's goals met only where the intervals clear them).
        Without it, the operating points are those of the test set itself (they describe it).

    Returns
    -------
    dict
        ``thresholds`` (rows of the threshold table), ``auc`` (rows), ``seed_met`` (method ->
        bool), ``seconds`` (method -> wall time), ``n`` and ``class_counts``; with ``validation``
        also ``held_out`` (rows: method, threshold, test purity and completeness with intervals)
        and ``goals`` (rows: goal, measured, met).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = estimates.labels(model.scheme)
    classes = model.classes
    scores, seconds = method_scores(model, estimates, baseline)
    methods = list(scores)

    curves, threshold_rows, auc_rows, curve_cols = {}, [], [], {k: [] for k in
                                                               ("method", "class", "threshold", "purity", "completeness")}
    for method in methods:
        for c, name in enumerate(classes):
            if c >= scores[method].shape[1]:
                continue
            positive = labels == c
            pc = purity_completeness(scores[method][:, c], positive)
            curves[method, name] = pc
            auc_rows.append({"method": method, "class": name, "roc_auc": roc_auc(scores[method][:, c], positive)})
            for level in PURITY_LEVELS:
                t, comp, pur = pc.at_purity(level)
                threshold_rows.append({"method": method, "class": name, "purity_target": level, "threshold": t,
                                       "completeness": comp, "purity": pur})
            keep = np.unique(np.linspace(0, len(pc.threshold) - 1, min(CURVE_POINTS, len(pc.threshold))).astype(int))
            for key, values in (("threshold", pc.threshold), ("purity", pc.purity), ("completeness", pc.completeness)):
                curve_cols[key].extend(values[keep])
            curve_cols["method"].extend([method] * len(keep))
            curve_cols["class"].extend([name] * len(keep))
    seed_met = {m: curves[m, SUCCESS].meets(SEED_PURITY, SEED_COMPLETENESS) for m in methods}
    held_out = goals = None
    if validation is not None:
        held_out, goals = _held_out(model, validation, baseline, scores, labels)
        write_csv(out / "held_out.csv", _rows_to_columns(held_out), overwrite=overwrite)

    write_csv(out / "scores.csv", _score_columns(estimates, labels, classes, scores), overwrite=overwrite)
    write_csv(out / "curves.csv", curve_cols, overwrite=overwrite)
    write_csv(out / "thresholds.csv", _rows_to_columns(threshold_rows), overwrite=overwrite)
    write_csv(out / "auc.csv", _rows_to_columns(auc_rows), overwrite=overwrite)
    diagrams = {m: reliability_diagram(scores[m][:, 0], labels == 0) for m in methods}
    write_csv(out / "calibration.csv", _rows_to_columns([
        {"method": m, "predicted": p, "observed": o, "count": int(n)}
        for m, d in diagrams.items() for p, o, n in zip(d.predicted, d.observed, d.count)]), overwrite=overwrite)
    by = [c for c in (by if by is not None else BY_DEFAULT) if c in estimates.truth]
    binned = binned_performance(estimates, labels, scores, curves, by)
    if binned:
        write_csv(out / "binned.csv", _rows_to_columns(binned), overwrite=overwrite)
    confusion = None
    if len(classes) > 2:
        confusion = {m: confusion_matrix(labels, scores[m].argmax(axis=1), len(classes))
                     for m in methods if scores[m].shape[1] == len(classes)}
        write_csv(out / "confusion.csv", _rows_to_columns([
            {"method": m, "true": classes[i], **{f"predicted_{classes[j]}": int(cm[i, j]) for j in range(len(classes))}}
            for m, cm in confusion.items() for i in range(len(classes))]), overwrite=overwrite)

    test_set = f"{estimates.source}, {len(labels)} spectra"
    figures = plot_report(out, curves, methods, classes, scores, labels, diagrams, confusion, binned, test_set)
    summary = {"n": len(labels), "class_counts": dict(zip(classes, np.bincount(labels, minlength=len(classes)).tolist())),
               "thresholds": threshold_rows, "auc": auc_rows, "seed_met": seed_met, "seconds": seconds}
    if held_out is not None:
        summary.update(held_out=held_out, goals=goals, validation=f"{validation.source}, {len(validation)} spectra")
    (out / "report.md").write_text(markdown_report(model, estimates, summary, figures, binned, confusion))
    return summary


def _held_out(model, validation: Estimates, baseline, scores: dict, labels: np.ndarray) -> tuple[list, list]:
    """Thresholds of purity 0.8 chosen on ``validation``, applied to the test scores (with intervals)."""
    val_scores, _ = method_scores(model, validation, baseline)
    val_success = validation.labels(model.scheme) == 0
    chosen = {m: purity_completeness(val_scores[m][:, 0], val_success).at_purity(SEED_PURITY) for m in scores}
    boot = bootstrap_selection({m: scores[m][:, 0] for m in scores}, labels == 0, {m: c[0] for m, c in chosen.items()})
    rows = []
    for m, (threshold, val_comp, val_pur) in chosen.items():
        (pur, pur_lo, pur_hi), (comp, comp_lo, comp_hi) = boot[m]["purity"], boot[m]["completeness"]
        rows.append({"method": m, "threshold": threshold, "validation_purity": val_pur,
                     "validation_completeness": val_comp, "test_purity": pur, "test_purity_lo": pur_lo,
                     "test_purity_hi": pur_hi, "test_completeness": comp, "test_completeness_lo": comp_lo,
                     "test_completeness_hi": comp_hi})
    cnn = boot["cnn"]
    goals = [{"goal": f"CNN: purity > {SEED_PURITY} with completeness > {SEED_COMPLETENESS}",
              "measured": f"purity {cnn['purity'][0]:.4f} [{cnn['purity'][1]:.4f}, {cnn['purity'][2]:.4f}], "
                          f"completeness {cnn['completeness'][0]:.4f} [{cnn['completeness'][1]:.4f}, "
                          f"{cnn['completeness'][2]:.4f}]",
              "met": cnn["purity"][1] > SEED_PURITY and cnn["completeness"][1] > SEED_COMPLETENESS}]
    for other, margin in (("z_proba", 0.10), ("gbm", 0.0)):
        if ("cnn", other) in boot["difference"]:
            d = boot["difference"]["cnn", other]
            goals.append({"goal": f"CNN completeness >= {METHOD_NAMES[other]}'s + {margin:.2f}",
                          "measured": f"difference {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]", "met": d[1] > margin})
    return rows, goals


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    """Counts (n, n): row = true class, column = predicted class."""
    return np.bincount(true * n + predicted, minlength=n * n).reshape(n, n)


def binned_performance(estimates: Estimates, labels, scores, curves, by, n_bins: int = 8) -> list[dict]:
    """Success fraction, purity and completeness of each method in quantile bins of truth columns.

    Each method selects with its own global threshold of purity 0.8 on ``success`` (the
    operating point of the whole set), so the bins show where that selection loses purity or
    completeness. Zero values (no Halpha line, or Halpha outside the spectrum) form their own
    bin (``lo == hi == 0``); the positive values are split into ``n_bins`` quantile bins.
    """
    rows = []
    success = labels == 0
    cut = {m: curves[m, SUCCESS].at_purity(SEED_PURITY)[0] for m in scores}
    for col in by:
        values = np.asarray(estimates.truth[col], dtype=float)
        positive = np.isfinite(values) & (values > 0)
        bins = [(0.0, 0.0, values == 0)] if np.any(values == 0) else []
        if positive.sum() >= n_bins:
            edges = np.unique(np.quantile(values[positive], np.linspace(0, 1, n_bins + 1)))
            index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
            bins += [(edges[b], edges[b + 1], positive & (index == b)) for b in range(len(edges) - 1)]
        for lo, hi, inside in bins:
            row = {"column": col, "lo": float(lo), "hi": float(hi), "n": int(inside.sum()),
                   "success_fraction": float(success[inside].mean()) if inside.any() else np.nan}
            for m in scores:
                sel = inside & (scores[m][:, 0] >= cut[m]) if np.isfinite(cut[m]) else np.zeros_like(inside)
                row[f"completeness_{m}"] = float((sel & success).sum() / max((inside & success).sum(), 1))
                row[f"purity_{m}"] = float((sel & success).sum() / sel.sum()) if sel.any() else np.nan
            rows.append(row)
    return rows


def _score_columns(estimates, labels, classes, scores) -> dict:
    cols = {}
    if "targetid" in estimates.table:
        cols["targetid"] = estimates.table["targetid"]
    cols.update({"z": estimates.table["z"], "z_true": estimates.z_true, "label": np.asarray(classes)[labels],
                 "z_proba": scores["z_proba"][:, 0]})
    for m in ("cnn", "gbm"):
        if m in scores:
            cols.update({f"{m}_p_{name}": scores[m][:, i] for i, name in enumerate(classes)})
    return cols


def _rows_to_columns(rows: list[dict]) -> dict:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: [r.get(k, np.nan) for r in rows] for k in keys}


# ---- figures --------------------------------------------------------------------------------
def plot_report(out: Path, curves, methods, classes, scores, labels, diagrams, confusion, binned,
                test_set: str) -> dict:
    """Write the PNG figures; returns {title: file name}. ``test_set`` names the spectra shown."""
    from ...plotting import pyplot

    plt = pyplot()
    figures = {}
    for name in classes:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
        n_pos = int((labels == classes.index(name)).sum())
        fig.suptitle(f"Class '{name}' against the rest: {test_set} ({n_pos} '{name}')", fontsize=10)
        for m in methods:
            if (m, name) not in curves:
                continue
            pc = curves[m, name]
            line, = axes[0].plot(pc.threshold, pc.purity, label=f"{METHOD_NAMES[m]} purity")
            axes[0].plot(pc.threshold, pc.completeness, ls="--", color=line.get_color(),
                         label=f"{METHOD_NAMES[m]} completeness")
            axes[1].plot(pc.completeness, pc.purity, color=line.get_color(), label=METHOD_NAMES[m])
            fpr, tpr = roc_curve(scores[m][:, classes.index(name)], labels == classes.index(name))
            axes[2].plot(fpr, tpr, color=line.get_color(), label=METHOD_NAMES[m])
        axes[0].set(xlabel=f"threshold on the score of '{name}' (probability)",
                    ylabel="purity (solid), completeness (dashed)", title="selection score >= threshold")
        axes[1].set(xlabel="completeness", ylabel="purity", title="purity vs completeness",
                    xlim=(0, 1), ylim=(0, 1.01))
        if name == SUCCESS:
            axes[1].axhline(SEED_PURITY, color="grey", lw=0.8, label=f"seed goal: purity > {SEED_PURITY}")
            axes[1].axvline(SEED_COMPLETENESS, color="grey", lw=0.8, ls=":",
                            label=f"seed goal: completeness > {SEED_COMPLETENESS}")
        axes[2].plot([0, 1], [0, 1], color="grey", lw=0.8, label="random score")
        axes[2].set(xlabel="false-positive rate", ylabel="true-positive rate (completeness)", title="ROC")
        for ax in axes:
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
        fig.tight_layout()
        figures[f"Purity and completeness ({name})"] = _save(fig, out / f"purity_completeness_{name}.png", plt)

    fig, ax = plt.subplots(figsize=(5, 5))
    for m, d in diagrams.items():
        ax.plot(d.predicted, d.observed, "o-", label=f"{METHOD_NAMES[m]} (ECE {d.ece:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, label="perfect calibration")
    ax.set(xlabel="predicted probability of success", ylabel="observed success fraction",
           xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"Reliability diagram ({test_set};\n10 bins of predicted probability, "
                 "ECE: expected calibration error)", fontsize=8)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=8)
    figures["Reliability diagram"] = _save(fig, out / "reliability_diagram.png", plt)

    if confusion:
        fig, axes = plt.subplots(1, len(confusion), figsize=(4.5 * len(confusion), 4), squeeze=False)
        for ax, (m, cm) in zip(axes[0], confusion.items()):
            frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
            ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
            for i in range(len(classes)):
                for j in range(len(classes)):
                    ax.text(j, i, f"{cm[i, j]}\n{frac[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if frac[i, j] > 0.5 else "black")
            ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes,
                   yticklabels=classes, xlabel="predicted class (highest probability)", ylabel="true class",
                   title=METHOD_NAMES[m])
        fig.suptitle(f"Confusion matrices ({test_set}): count and fraction of the true class", fontsize=9)
        fig.tight_layout()
        figures["Confusion matrices (rows: true class)"] = _save(fig, out / "confusion.png", plt)

    for col in dict.fromkeys(r["column"] for r in binned):
        rows = [r for r in binned if r["column"] == col and r["hi"] > 0]  # the zero bin is in the table
        if not rows:
            continue
        centre = np.array([np.sqrt(r["lo"] * r["hi"]) for r in rows])
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].plot(centre, [r["success_fraction"] for r in rows], "k.-", label="success fraction")
        for m in methods:
            axes[0].plot(centre, [r[f"completeness_{m}"] for r in rows], ".-", label=f"completeness, {METHOD_NAMES[m]}")
            axes[1].plot(centre, [r[f"purity_{m}"] for r in rows], ".-", label=f"{METHOD_NAMES[m]}")
        label = BINNED_LABELS.get(col, col)
        axes[0].set(xlabel=label, ylabel=f"fraction (selection at global purity {SEED_PURITY})",
                    title=f"success fraction and completeness vs {col}")
        axes[1].set(xlabel=label, ylabel="purity", title=f"purity vs {col}")
        n_shown = sum(r["n"] for r in rows)
        fig.suptitle(f"{n_shown} spectra with {col} > 0 in {len(rows)} equal-count bins ({test_set})", fontsize=9)
        for ax in axes:
            ax.set_xscale("log")
            readable_log_axis(ax.xaxis)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
            ax.tick_params(labelsize=8)
        fig.tight_layout()
        figures[f"Performance vs {col}"] = _save(fig, out / f"vs_{col}.png", plt)
    return figures


def _save(fig, path: Path, plt) -> str:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


# ---- Markdown -------------------------------------------------------------------------------
def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table of dict rows (floats with 4 significant digits)."""
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "—" if not np.isfinite(v) else f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(model, estimates, summary, figures, binned, confusion) -> str:
    classes = model.classes
    lines = [f"# Redshift reliability: {estimates.source}", "",
             f"Model: {model.name} (labels `{model.scheme.name}`: {', '.join(classes)}; tolerance "
             f"{model.scheme.tolerance}" + (f", true z in {model.scheme.window}" if model.scheme.window else "") + ").",
             f"Test spectra: {summary['n']} ({', '.join(f'{k} {v}' for k, v in summary['class_counts'].items())}).", "",
             "## Operating points", "",
             "For each purity, the threshold giving the largest completeness (— where no threshold reaches "
             "it), chosen on these same spectra: it describes this sample (for a held-out figure, thresholds "
             "are chosen on validation data: `--validation`). Seed operating point: "
             f"purity > {SEED_PURITY} with completeness > {SEED_COMPLETENESS}.", ""]
    rows = [dict(r, method=METHOD_NAMES[r["method"]]) for r in summary["thresholds"]]
    lines.append(markdown_table(rows, ["method", "class", "purity_target", "threshold", "completeness", "purity"]))
    lines += ["", "| method | seed operating point |", "|---|---|"]
    lines += [f"| {METHOD_NAMES[m]} | {'met' if ok else 'not met'} |" for m, ok in summary["seed_met"].items()]
    if "held_out" in summary:
        lines += ["", "## Operating point chosen on validation data", "",
                  f"Each method's threshold of purity {SEED_PURITY} (class success) is chosen on the validation "
                  f"set ({summary['validation']}) and applied to the test spectra above; [lo, hi]: 95 % paired "
                  "bootstrap intervals over the test spectra. A goal is met only when its interval clears it.", "",
                  markdown_table([dict(r, method=METHOD_NAMES[r["method"]]) for r in summary["held_out"]],
                                 ["method", "threshold", "validation_purity", "validation_completeness", "test_purity",
                                  "test_purity_lo", "test_purity_hi", "test_completeness", "test_completeness_lo",
                                  "test_completeness_hi"]), "",
                  "| goal | measured | met |", "|---|---|---|"]
        lines += [f"| {g['goal']} | {g['measured']} | {'yes' if g['met'] else 'not shown'} |" for g in summary["goals"]]
    lines += ["", "## ROC AUC", "",
              markdown_table([dict(r, method=METHOD_NAMES[r["method"]]) for r in summary["auc"]],
                             ["method", "class", "roc_auc"]), ""]
    lines += ["## Timing", "", "| method | seconds | PDFs/s |", "|---|---|---|"]
    lines += [f"| {METHOD_NAMES[m]} | {s:.2f} | {summary['n'] / s:.0f} |" for m, s in summary["seconds"].items() if s > 0]
    lines.append("")
    if confusion:
        lines += ["## Confusion matrices", ""]
        for m, cm in confusion.items():
            rows = [{"true": classes[i], **{f"→ {classes[j]}": int(cm[i, j]) for j in range(len(classes))}}
                    for i in range(len(classes))]
            lines += [f"{METHOD_NAMES[m]}:", "", markdown_table(rows, ["true", *[f"→ {c}" for c in classes]]), ""]
    if binned:
        lines += ["## Performance in bins of the truth", "",
                  "Each method selects with its global purity-0.8 threshold; lo = hi = 0: no Halpha in the "
                  "spectrum (no lines, or outside the wavelength range).", ""]
        cols = ["column", "lo", "hi", "n", "success_fraction", *[k for k in binned[0] if k.startswith(("completeness_", "purity_"))]]
        lines += [markdown_table(binned, cols), ""]
    lines += ["## Figures", ""] + [f"### {title}\n\n![{title}]({name})\n" for title, name in figures.items()]
    return "\n".join(lines)
