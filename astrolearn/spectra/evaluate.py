"""Purity, completeness and confusion matrices of class predictions on simulated shards.

``evaluate`` writes, in its output directory: ``classes.csv`` (predictions, input order),
``confusion.csv`` and ``confusion.md`` (rows: true class, columns: predicted class),
``purity_completeness.csv`` (per class, overall and in bins of continuum S/N per pixel and of AB
magnitude) and ``purity_completeness.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .simulate import CLASSES, TRUTH_COLUMNS

SNR_BINS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, np.inf)
MAG_BINS = (14.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 30.0)


def confusion(true, pred, k: int = 3) -> np.ndarray:
    """Counts (k, k): rows true class, columns predicted class."""
    return np.bincount(np.asarray(true) * k + np.asarray(pred), minlength=k * k).reshape(k, k)


def purity_completeness(true, pred, k: int = 3):
    """Per-class purity (precision) and completeness (recall); NaN where undefined."""
    c = confusion(true, pred, k).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(c) / c.sum(axis=0), np.diag(c) / c.sum(axis=1)


def binned_rows(method, true, pred, values, bins, quantity):
    """Rows (method, quantity, lo, hi, class, n_true, purity, completeness) per bin of ``values``."""
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (values >= lo) & (values < hi)
        if not sel.any():
            continue
        pur, comp = purity_completeness(true[sel], pred[sel])
        for k, name in enumerate(CLASSES):
            rows.append((method, quantity, lo, hi, name, int(np.sum(true[sel] == k)), pur[k], comp[k]))
    return rows


def markdown_confusion(c: np.ndarray, title: str) -> str:
    lines = [f"{title} (rows: true, columns: predicted)", "", "| true \\ pred | " + " | ".join(CLASSES) + " |",
             "|---|" + "---|" * len(CLASSES)]
    for k, name in enumerate(CLASSES):
        lines.append(f"| {name} | " + " | ".join(str(int(v)) for v in c[k]) + " |")
    return "\n".join(lines) + "\n"


def write_reports(out: Path, results: dict, truth: dict, prefix: str = "") -> list[Path]:
    """Confusion (CSV + Markdown), purity/completeness vs S/N and magnitude (CSV + PNG) per method.

    Parameters
    ----------
    out : Path
    results : dict
        method name -> predicted labels (N,).
    truth : dict
        ``label``, ``snr_cont``, ``mag`` arrays (N,).
    """
    from ..plotting import pyplot

    plt = pyplot()

    true = truth["label"].astype(int)
    rows, md, conf_rows = [], [], []
    for method, pred in results.items():
        c = confusion(true, pred)
        md.append(markdown_confusion(c, method))
        conf_rows += [(method, CLASSES[k], *c[k]) for k in range(3)]
        pur, comp = purity_completeness(true, pred)
        rows += [(method, "all", -np.inf, np.inf, CLASSES[k], int(np.sum(true == k)), pur[k], comp[k]) for k in range(3)]
        rows += binned_rows(method, true, pred, truth["snr_cont"], SNR_BINS, "snr_cont")
        rows += binned_rows(method, true, pred, truth["mag"], MAG_BINS, "mag")
    files = [out / f"{prefix}confusion.csv", out / f"{prefix}confusion.md", out / f"{prefix}purity_completeness.csv",
             out / f"{prefix}purity_completeness.png"]
    files[0].write_text("method,true," + ",".join(f"pred_{c}" for c in CLASSES) + "\n"
                        + "".join(",".join(str(v) for v in r) + "\n" for r in conf_rows))
    files[1].write_text("\n".join(md))
    files[2].write_text("method,quantity,lo,hi,class,n_true,purity,completeness\n"
                        + "".join(f"{m},{q},{lo:g},{hi:g},{c},{n},{p:.4f},{r:.4f}\n"
                                  for m, q, lo, hi, c, n, p, r in rows))
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), sharey=True)
    for j, quantity in enumerate(("snr_cont", "mag")):
        for k, name in enumerate(CLASSES):
            ax = axes[j, k]
            for method in results:
                sel = [r for r in rows if r[0] == method and r[1] == quantity and r[4] == name]
                x = [(min(r[2], 40) + min(r[3], 40)) / 2 for r in sel]
                ax.plot(x, [r[7] for r in sel], "o-", label=f"{method} completeness")
                ax.plot(x, [r[6] for r in sel], "s--", label=f"{method} purity")
            ax.axhline(0.99, color="k", lw=0.5)
            ax.set_title(name)
            ax.set_xlabel("continuum S/N per pixel" if quantity == "snr_cont" else "AB magnitude")
            if quantity == "snr_cont":
                ax.set_xscale("symlog", linthresh=1)
                ax.set_xlim(0, 45)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(files[3], dpi=80)
    plt.close(fig)
    return files


def read_truth(shards) -> dict:
    """Truth columns of simulated shards, concatenated."""
    import json

    import h5py

    parts = []
    for p in shards:
        with h5py.File(p, "r") as f:
            names = json.loads(f["params"].attrs["names"])
            if names[:len(TRUTH_COLUMNS)] != TRUTH_COLUMNS:
                raise UserError(f"{p}: not a shard of 'astrolearn spectra simulate' (truth columns {names})")
            parts.append(f["params"][...])
    params = np.concatenate(parts)
    return {c: params[:, i] for i, c in enumerate(TRUTH_COLUMNS)}


def evaluate(data, out, model=None, overwrite: bool = False) -> dict:
    """Classify simulated shards with a model and write the reports (module doc)."""
    from ..io.shards import list_shards
    from .predict import classify_input, write_classes

    out = Path(out)
    names = ["classes.csv", "confusion.csv", "confusion.md", "purity_completeness.csv", "purity_completeness.png"]
    if not overwrite and any((out / n).exists() for n in names):
        raise UserError(f"{out}: holds evaluation files (use --overwrite to replace them)")
    shards = list_shards(data)
    truth = read_truth(shards)
    clf, probs, tids = classify_input(data, model)
    out.mkdir(parents=True, exist_ok=True)
    pred = probs.argmax(axis=1)
    files = [write_classes(out / "classes.csv", probs, tids, clf.classes)]
    files += write_reports(out, {"cnn": pred}, truth)
    return {"n": len(pred), "accuracy": float(np.mean(pred == truth["label"])), "files": files}
