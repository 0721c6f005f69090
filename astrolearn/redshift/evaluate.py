"""Evaluation of redshift estimates against the truth of simulated spectra.

Success: |z_best - z_true| / (1 + z_true) < ``tol`` (0.003). Failures are named by the line
confusion they correspond to (:func:`astrolearn.redshift.lines.classify_alias`, e.g. Halpha
taken for [OIII]5008: (1 + z_best) / (1 + z_true) = 1.3108). Success rates are tabulated
against the Halpha flux, the Halpha matched-filter S/N and whether Halpha is in the window;
``evaluate`` writes ``evaluation.csv``, ``evaluation.md`` and PNG plots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io.shards import atomic_write
from . import io as rio
from .lines import alias_ratios, classify_alias

FLUX_BINS = (0.0, 5e-17, 1e-16, 1.5e-16, 2e-16, 3e-16, 5e-16, 1e-15, np.inf)
SNR_BINS = (0.0, 1.0, 2.0, 3.0, 3.5, 5.0, 7.0, 10.0, 20.0, np.inf)
HALPHA_Z = (0.8371, 1.8822)  # Halpha inside 12060-18920 A


def load_results(est_dir) -> dict:
    """Concatenate the per-chunk estimates of a directory (input order), without the PDFs."""
    est_dir = Path(est_dir)
    files = sorted(est_dir.glob("zpdf-*.h5")) if est_dir.is_dir() else [est_dir]
    if not files or not files[0].exists():
        raise UserError(f"{est_dir}: no zpdf-*.h5 estimate files")
    parts = [rio.read_chunk(f, skip=("log_pdf", "chi2", "exact", "zgrid")) for f in files]
    parts.sort(key=lambda c: int(c["attrs"]["first_row"]))
    out = {k: np.concatenate([p[k] for p in parts]) for k in ("targetid", "z", "z_err", "z_proba", "status")}
    if not all("params" in p for p in parts):
        raise UserError(f"{est_dir}: estimates carry no truth table (evaluate needs simulated inputs)")
    names = parts[0]["params_names"]
    params = np.concatenate([p["params"] for p in parts])
    if "z" not in names:
        raise UserError(f"{est_dir}: truth has no 'z' column")
    out["truth"] = {n: params[:, i] for i, n in enumerate(names)}
    return out


def _rate_table(label, values, bins, ok, fmt):
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (values >= lo) & (values < hi)
        n = int(sel.sum())
        if n == 0:
            continue
        k = int(ok[sel].sum())
        rate = k / n
        err = np.sqrt(max(rate * (1 - rate), 1.0 / n) / n)
        rows.append({"table": label, "bin": f"{fmt(lo)}-{fmt(hi)}", "lo": lo, "hi": hi, "n": n,
                     "success": k, "rate": rate, "rate_err": err})
    return rows


def evaluate_results(res: dict, tol: float = 0.003) -> dict:
    """Success-rate tables and alias breakdown (see module doc)."""
    t = res["truth"]
    zt, zb = t["z"], res["z"]
    ok = np.isfinite(zb) & (np.abs(zb - zt) / (1 + zt) < tol)
    alias = classify_alias(zb, zt, tol)
    flux = t.get("halpha_flux", np.full_like(zt, np.nan))
    snr = t.get("halpha_snr", np.full_like(zt, np.nan))
    has = t.get("has_lines", np.ones_like(zt)) > 0
    inwin = (zt > HALPHA_Z[0]) & (zt < HALPHA_Z[1])
    rows = [{"table": "all", "bin": "all", "lo": np.nan, "hi": np.nan, "n": len(zt), "success": int(ok.sum()),
             "rate": float(ok.mean()), "rate_err": float(np.sqrt(ok.mean() * (1 - ok.mean()) / max(len(zt), 1)))}]
    for label, sel in (("halpha_in_window", has & inwin), ("halpha_out_of_window", has & ~inwin),
                       ("no_lines", ~has)):
        n = int(sel.sum())
        if n:
            r = float(ok[sel].mean())
            rows.append({"table": "sample", "bin": label, "lo": np.nan, "hi": np.nan, "n": n,
                         "success": int(ok[sel].sum()), "rate": r, "rate_err": float(np.sqrt(max(r * (1 - r), 1 / n) / n))})
    sel = has & inwin
    rows += _rate_table("halpha_flux (Halpha in window)", flux[sel], FLUX_BINS, ok[sel], lambda v: f"{v:.2g}")
    rows += _rate_table("halpha_snr (Halpha in window)", snr[sel], SNR_BINS, ok[sel], lambda v: f"{v:g}")
    sel = has & ~inwin
    rows += _rate_table("halpha_flux (Halpha out of window)", flux[sel], FLUX_BINS, ok[sel], lambda v: f"{v:.2g}")
    fails = alias[~ok]
    names, counts = np.unique(fails, return_counts=True)
    order = np.argsort(-counts)
    aliases = [{"alias": str(names[i]), "ratio": alias_ratios().get(str(names[i]), np.nan), "n": int(counts[i]),
                "fraction_of_failures": float(counts[i] / max(len(fails), 1))} for i in order]
    return {"rows": rows, "aliases": aliases, "ok": ok, "alias": alias, "n": len(zt), "tol": tol}


def _markdown(ev: dict) -> str:
    lines = [f"# Redshift evaluation ({ev['n']} spectra, success: |dz|/(1+z) < {ev['tol']})", ""]
    cur = None
    for r in ev["rows"]:
        if r["table"] != cur:
            cur = r["table"]
            lines += ["", f"## {cur}", "", "| bin | n | success rate |", "|---|---:|---:|"]
        lines.append(f"| {r['bin']} | {r['n']} | {r['rate']:.3f} +- {r['rate_err']:.3f} |")
    lines += ["", "## failures by alias", "", "| alias | (1+z_best)/(1+z_true) | n | fraction of failures |",
              "|---|---:|---:|---:|"]
    for a in ev["aliases"]:
        ratio = "" if not np.isfinite(a["ratio"]) else f"{a['ratio']:.4f}"
        lines.append(f"| {a['alias']} | {ratio} | {a['n']} | {a['fraction_of_failures']:.3f} |")
    return "\n".join(lines) + "\n"


def _plots(res, ev, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for key, title, fname, xlog in (("halpha_flux (Halpha in window)", "Halpha flux [erg/s/cm2]", "success_vs_flux.png", True),
                                    ("halpha_snr (Halpha in window)", "Halpha S/N (matched filter)", "success_vs_snr.png", False)):
        rows = [r for r in ev["rows"] if r["table"] == key]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        x = [np.sqrt(r["lo"] * r["hi"]) if xlog and np.isfinite(r["hi"]) and r["lo"] > 0 else
             (r["lo"] + r["hi"]) / 2 if np.isfinite(r["hi"]) else r["lo"] * 1.5 for r in rows]
        ax.errorbar(x, [r["rate"] for r in rows], yerr=[r["rate_err"] for r in rows], marker="o")
        if xlog:
            ax.set_xscale("log")
            ax.axvline(2e-16, color="grey", ls="--", label="Euclid limit 2e-16")
            ax.legend()
        ax.set_xlabel(title)
        ax.set_ylabel("success rate")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        p = out_dir / fname
        with atomic_write(p) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        paths.append(p)
    zt, zb = res["truth"]["z"], res["z"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    axes[0].scatter(zt, zb, s=3, c=np.where(ev["ok"], "tab:blue", "tab:red"))
    axes[0].set_xlabel("z true")
    axes[0].set_ylabel("z best")
    ratio = (1 + zb[~ev["ok"]]) / (1 + zt[~ev["ok"]])
    ratio = ratio[np.isfinite(ratio)]
    axes[1].hist(ratio, bins=np.linspace(0.3, 3.0, 271), color="tab:red")
    for name, r in alias_ratios().items():
        if name in ("Halpha->OIII5008", "Halpha->Hbeta", "Halpha->OII", "OIII5008->Halpha", "OII->Halpha",
                    "Halpha->SIII9533", "SIII9533->Halpha"):
            axes[1].axvline(r, color="grey", lw=0.7)
            axes[1].text(r, axes[1].get_ylim()[1] * 0.9, name, rotation=90, fontsize=7, va="top")
    axes[1].set_xlabel("(1 + z_best) / (1 + z_true) of failures")
    axes[1].set_ylabel("count")
    fig.tight_layout()
    p = out_dir / "zbest_vs_ztrue.png"
    with atomic_write(p) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    paths.append(p)
    return paths


def evaluate(est_dir, out_dir=None, tol: float = 0.003, overwrite: bool = False, plots: bool = True) -> dict:
    """Evaluate an estimate directory; write ``evaluation.csv``, ``evaluation.md`` and plots.

    Parameters
    ----------
    est_dir : path-like
        Output of ``astrolearn redshift estimate`` on simulated shards.
    out_dir : path-like, optional
        Destination (default ``est_dir/evaluation``).
    tol : float
        Success threshold on |dz| / (1 + z).
    overwrite : bool
        Replace existing evaluation files.
    plots : bool
        Write the PNG plots.
    """
    res = load_results(est_dir)
    ev = evaluate_results(res, tol)
    out_dir = Path(out_dir) if out_dir is not None else Path(est_dir) / "evaluation"
    csv, md = out_dir / "evaluation.csv", out_dir / "evaluation.md"
    for p in (csv, md):
        if p.exists() and not overwrite:
            raise UserError(f"{p}: already exists (use --overwrite to replace it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = ["table", "bin", "n", "success", "rate", "rate_err"]
    with atomic_write(csv) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(",".join(keys) + "\n")
            for r in ev["rows"]:
                fh.write(",".join(f'"{r[k]}"' if k in ("table", "bin") else str(r[k]) for k in keys) + "\n")
            fh.write("\n" + "alias,ratio,n,fraction_of_failures\n")
            for a in ev["aliases"]:
                fh.write(f"{a['alias']},{a['ratio']},{a['n']},{a['fraction_of_failures']}\n")
    with atomic_write(md) as tmp:
        tmp.write_text(_markdown(ev))
    ev["files"] = [csv, md] + (_plots(res, ev, out_dir) if plots else [])
    return ev
