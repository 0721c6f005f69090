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
#: What the rate tables' uncertainty is (the report defines its "+-" with it).
RATE_ERROR = "1-sigma binomial uncertainty of the rate, sqrt(max(p (1 - p), 1/n) / n)"
#: Truth columns binned in the tables and plots, with their units.
BINNED_LABELS = {"halpha_flux": "Halpha flux [erg/s/cm^2]", "halpha_snr": "Halpha S/N (matched filter, no unit)"}


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


def rate_error(rate: float, n: int) -> float:
    """The :data:`RATE_ERROR` of a success rate over ``n`` spectra (floored at 1/n: a rate of 0 or 1 is
    no certainty)."""
    return float(np.sqrt(max(rate * (1 - rate), 1.0 / max(n, 1)) / max(n, 1)))


def _rate_table(label, values, bins, ok, fmt):
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (values >= lo) & (values < hi)
        n = int(sel.sum())
        if n == 0:
            continue
        k = int(ok[sel].sum())
        rate = k / n
        err = rate_error(rate, n)
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
             "rate": float(ok.mean()), "rate_err": rate_error(float(ok.mean()), len(zt))}]
    for label, sel in (("halpha_in_window", has & inwin), ("halpha_out_of_window", has & ~inwin),
                       ("no_lines", ~has)):
        n = int(sel.sum())
        if n:
            r = float(ok[sel].mean())
            rows.append({"table": "sample", "bin": label, "lo": np.nan, "hi": np.nan, "n": n,
                         "success": int(ok[sel].sum()), "rate": r, "rate_err": rate_error(r, n)})
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
    lines = [f"# Redshift evaluation ({ev['n']} spectra, success: |dz|/(1+z) < {ev['tol']})", "",
             f"Success rates are given as rate +- sigma, sigma the {RATE_ERROR} (p: the rate, n: spectra in "
             "the bin). Bins of " + "; ".join(BINNED_LABELS.values()) + ". \"in window\": Halpha falls inside the "
             f"1.206-1.892 um spectrum (z_true in {HALPHA_Z[0]}-{HALPHA_Z[1]}).", ""]
    cur = None
    for r in ev["rows"]:
        if r["table"] != cur:
            cur = r["table"]
            lines += ["", f"## {cur}", "", "| bin | n | success rate +- sigma |", "|---|---:|---:|"]
        lines.append(f"| {r['bin']} | {r['n']} | {r['rate']:.3f} +- {r['rate_err']:.3f} |")
    lines += ["", "## failures by alias", "", "| alias | (1+z_best)/(1+z_true) | n | fraction of failures |",
              "|---|---:|---:|---:|"]
    for a in ev["aliases"]:
        ratio = "" if not np.isfinite(a["ratio"]) else f"{a['ratio']:.4f}"
        lines.append(f"| {a['alias']} | {ratio} | {a['n']} | {a['fraction_of_failures']:.3f} |")
    return "\n".join(lines) + "\n"


def readable_log_axis(axis) -> None:
    """Ticks of a logarithmic matplotlib axis at 1, 2, 3, 5 x 10^k, labelled as plain numbers (2e-16, 5)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _plots(res, ev, out_dir: Path) -> list[Path]:
    from ..plotting import pyplot

    plt = pyplot()

    paths = []
    n_all = ev["n"]
    for key, column, fname, xlog in (("halpha_flux (Halpha in window)", "halpha_flux", "success_vs_flux.png", True),
                                     ("halpha_snr (Halpha in window)", "halpha_snr", "success_vs_snr.png", False)):
        rows = [r for r in ev["rows"] if r["table"] == key]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        # The open last bin (up to infinity) is drawn at 1.5 x its lower edge.
        x = [np.sqrt(r["lo"] * r["hi"]) if xlog and np.isfinite(r["hi"]) and r["lo"] > 0 else
             (r["lo"] + r["hi"]) / 2 if np.isfinite(r["hi"]) else r["lo"] * 1.5 for r in rows]
        ax.errorbar(x, [r["rate"] for r in rows], yerr=[r["rate_err"] for r in rows], marker="o", capsize=3,
                    label="success rate +- 1 sigma (binomial)")
        if xlog:
            ax.set_xscale("log")
            readable_log_axis(ax.xaxis)
            ax.axvline(2e-16, color="grey", ls="--", label="Euclid flux limit 2e-16 erg/s/cm^2")
        ax.legend(fontsize=8, loc="lower right")
        n_sub = sum(r["n"] for r in rows)
        ax.set_title(f"Success vs {column}: {n_sub} of {n_all} spectra (Halpha in the window)", fontsize=9)
        ax.set_xlabel(BINNED_LABELS[column], fontsize=9)
        ax.set_ylabel(f"success rate (|dz|/(1+z) < {ev['tol']})", fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, which="both")
        fig.tight_layout()
        paths.append(_save_png(fig, out_dir / fname, plt))
    zt, zb, ok = res["truth"]["z"], res["z"], ev["ok"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    axes[0].scatter(zt[ok], zb[ok], s=4, color="tab:blue", label=f"success ({int(ok.sum())})")
    axes[0].scatter(zt[~ok], zb[~ok], s=6, color="tab:red", label=f"failure ({int((~ok).sum())})")
    axes[0].set_xlabel("true redshift z_true", fontsize=9)
    axes[0].set_ylabel("estimated redshift z_best", fontsize=9)
    axes[0].set_title(f"All {n_all} spectra (success: |dz|/(1+z) < {ev['tol']})", fontsize=9)
    axes[0].legend(fontsize=8)
    ratio = (1 + zb[~ok]) / (1 + zt[~ok])
    ratio = ratio[np.isfinite(ratio)]
    axes[1].hist(ratio, bins=np.linspace(0.3, 3.0, 271), color="tab:red", label="failures")
    top = axes[1].get_ylim()[1]
    for name, r in alias_ratios().items():
        if name in ("Halpha->OIII5008", "Halpha->Hbeta", "Halpha->OII", "OIII5008->Halpha", "OII->Halpha",
                    "Halpha->SIII9533", "SIII9533->Halpha"):
            axes[1].axvline(r, color="grey", lw=0.7)
            axes[1].text(r, top * 0.95, name, rotation=90, fontsize=7, va="top")
    axes[1].set_xlabel("(1 + z_best) / (1 + z_true)", fontsize=9)
    axes[1].set_ylabel("failures per 0.01 bin", fontsize=9)
    axes[1].set_title(f"The {len(ratio)} failures; grey: line confusions (true line -> taken for)", fontsize=9)
    for ax in axes:
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    paths.append(_save_png(fig, out_dir / "zbest_vs_ztrue.png", plt))
    return paths


def _save_png(fig, path: Path, plt) -> Path:
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


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
