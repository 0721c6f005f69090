"""``psf evaluate``: CNN vs classical fit vs hybrid on a simulated test set, with Cramér-Rao bounds.

For every parameter: median and 68th-percentile absolute and relative errors, mean relative
error, 90th percentile, Pearson r, time per PSF, and the median ratio of the error to the
Cramér-Rao lower bound computed for each test PSF from the differentiable model and the noise
model (Fisher information J^T W J at the truth). Static modes are in nm; even modes are compared
modulo their common sign (a single in-focus image cannot tell it). The fit starts from the prior
median; the hybrid starts from the CNN's estimate and keeps it as a Gaussian prior of the CNN's
predicted uncertainty (``PsfFitter.fit(prior=...)``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .metrics import RELATIVE, markdown_table

PSD_REPORTED = ("r0", "bck", "amp", "alpha", "ratio", "theta", "beta")


def align_even_sign(estimate: np.ndarray, truth: np.ndarray, even: np.ndarray) -> np.ndarray:
    """Flip the even static modes of each estimate (together) to the sign closest to the truth."""
    if not even.any():
        return estimate
    e, t = estimate[:, even], truth[:, even]
    flip = ((-e - t) ** 2).sum(axis=1) < ((e - t) ** 2).sum(axis=1)
    out = estimate.copy()
    out[np.ix_(flip, np.flatnonzero(even))] *= -1
    return out


def comparable(table: dict, names: list[str]) -> dict:
    """Columns in a comparable convention: canonical ellipse (ratio >= 1)."""
    from .learn import canonical_ellipse

    out = {n: np.asarray(table[n], dtype=float) for n in names}
    out["ratio"], out["theta"] = canonical_ellipse(out["ratio"], out["theta"])
    return out


def error_rows(method: str, truth: dict, est: dict, names: list[str], crb: dict | None, seconds: float) -> list[dict]:
    rows = []
    for name in names:
        t, e = truth[name], est[name]
        err = np.abs(e - t)
        rel = 100 * err / np.abs(t) if name in RELATIVE else np.full_like(err, np.nan)
        ok = np.isfinite(err)
        row = {"method": method, "parameter": name,
               "unit": "nm" if name.startswith("stat_") else ("rad" if name == "theta" else ""),
               "median_abs": np.median(err[ok]), "p68_abs": np.percentile(err[ok], 68),
               "median_rel_%": np.nanmedian(rel) if name in RELATIVE else np.nan, "p68_rel_%": np.nanpercentile(rel, 68) if name in RELATIVE else np.nan,
               "p90_rel_%": np.nanpercentile(rel, 90) if name in RELATIVE else np.nan,
               "mean_rel_%": np.nanmean(rel) if name in RELATIVE else np.nan,
               "pearson_r": np.corrcoef(t[ok], e[ok])[0, 1] if ok.sum() > 2 and np.std(t) > 0 else np.nan,
               "err/CRB_median": np.nan, "s_per_psf": seconds}
        if crb is not None and name in crb:
            k = min(len(err), len(crb[name]))  # bounds exist on the fitted subset only
            row["err/CRB_median"] = float(np.nanmedian(err[:k] / crb[name][:k]))
        rows.append(row)
    return rows


def cramer_rao(fitter, images: np.ndarray, truth_table: dict, weights: np.ndarray) -> dict:
    """Per-PSF Cramér-Rao bounds (1 sigma) of every fitted parameter, in output units."""
    import torch

    from .model import r0_to_wavelength

    names = fitter.names
    p = torch.tensor(np.stack([np.asarray(truth_table[n], dtype=float) for n in names], axis=1))
    p[:, 0] = r0_to_wavelength(p[:, 0], fitter.instrument.wavelength_m)
    z = torch.where(fitter.is_log, p.clamp(min=1e-300).log(), p)
    out = []
    for s in range(0, len(z), fitter.batch):
        _, jac = fitter._jacobian(z[s : s + fitter.batch])
        w = torch.as_tensor(weights[s : s + fitter.batch])
        jw = (jac * w.sqrt()[:, None]).flatten(2)
        cov = torch.linalg.pinv(jw @ jw.transpose(1, 2))
        out.append(torch.diagonal(cov, dim1=1, dim2=2).clamp(min=0).sqrt())
    sz = torch.cat(out)
    sp = torch.where(fitter.is_log, p * sz, sz).numpy()
    from .model import r0_to_500nm

    sp[:, 0] = r0_to_500nm(sp[:, 0], fitter.instrument.wavelength_m)
    return {n: sp[:, i] for i, n in enumerate(names)}


def evaluate(model_dir, data_dir, out_dir, compare_fit: bool = True, n_fit: int | None = None,
             progress: bool = True, hybrid: bool = True) -> Path:
    """Write the comparison report (Markdown, CSV, PNG) into ``out_dir``; returns the report path."""
    from ..io.shards import list_shards, read_shard
    from ..io.tables import write_csv
    from .fit import PsfFitter
    from .instruments import Instrument
    from .learn import PsfEstimator, check_compatible, locate_model
    from .noise import variance_from_image
    from .pupils import even_modes

    model_dir = locate_model(model_dir)
    est = PsfEstimator(model_dir)
    shards = [read_shard(p, domain="psf") for p in list_shards(data_dir)]
    instrument = Instrument.from_dict(shards[0].meta["instrument"])
    check_compatible(est.meta, instrument, data_dir)
    images = np.concatenate([s.arrays["images"] for s in shards]).astype(np.float64)
    names_all = shards[0].names
    truth_raw = {n: np.concatenate([s.column(n) for s in shards]) for n in names_all}
    stat_names = [n for n in names_all if n.startswith("stat_")]
    even = np.asarray(even_modes(instrument.static_basis, instrument.pupil_array), bool) if stat_names else \
        np.zeros(0, bool)
    names = [n for n in PSD_REPORTED] + stat_names
    weights = 1.0 / variance_from_image(images, instrument)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    cnn = est.predict(images)
    t_cnn = (time.perf_counter() - t0) / len(images)
    truth = comparable(truth_raw, names)
    results = {"cnn": (comparable(cnn, names), t_cnn, slice(None))}
    crb = None
    if compare_fit:
        m = len(images) if n_fit is None else min(n_fit, len(images))
        fitter = PsfFitter(instrument, fit_static=bool(stat_names))
        fit, t_fit = _cached_fit(fitter, images[:m], weights[:m], None, out_dir / "fit_cache.npz", progress)
        results["fit"] = (comparable(fit, names), t_fit, slice(0, m))
        if hybrid:
            cnn_sub = {k: v[:m] for k, v in cnn.items()}
            hyb, t_hyb = _cached_fit(fitter, images[:m], weights[:m], cnn_sub, out_dir / "hybrid_cache.npz", progress,
                                     prior=True)
            results["hybrid"] = (comparable(hyb, names), t_hyb + t_cnn, slice(0, m))
        crb = cramer_rao(fitter, images[:m], {k: v[:m] for k, v in truth_raw.items()}, weights[:m])
    rows = []
    for method, (table, seconds, sel) in results.items():
        t = {n: truth[n][sel] for n in names}
        e = {n: table[n] for n in names}
        if stat_names:
            s_est = align_even_sign(np.stack([e[n] for n in stat_names], 1), np.stack([t[n] for n in stat_names], 1), even)
            e.update({n: s_est[:, i] for i, n in enumerate(stat_names)})
        rows += error_rows(method, t, e, names, crb, seconds)
        write_csv(out_dir / f"{method}.csv", {n: e[n] for n in names}, overwrite=True)
    write_csv(out_dir / "errors.csv", {k: [r[k] for r in rows] for k in rows[0]}, overwrite=True)
    _plots(out_dir, truth, results, names)
    report = out_dir / "report.md"
    cols = ["method", "parameter", "unit", "median_abs", "p68_abs", "median_rel_%", "p68_rel_%", "mean_rel_%",
            "p90_rel_%", "pearson_r", "err/CRB_median", "s_per_psf"]
    report.write_text("\n".join([
        "# PSF estimation: CNN vs least-squares fit vs hybrid\n",
        f"Model: `{model_dir}`; test data: `{data_dir}` ({len(images)} PSFs, {instrument.name}, "
        f"{instrument.wavelength_um} um); fit and hybrid on the first {results.get('fit', (0, 0, slice(0, 0)))[2].stop or 0}.\n",
        "Fit: from the prior median. Hybrid: from the CNN's estimate, with the CNN's estimate and"
        " uncertainty as a Gaussian prior on r0, C, A, alpha, beta.\n",
        "Relative errors in %, static modes in nm (even modes modulo their common sign), theta in rad;"
        " ratio/theta in the canonical convention ratio >= 1.\n",
        markdown_table(rows, cols),
        "\nPlots: `scatter_<method>.png` (true vs estimated), `errors_hist.png`.\n",
    ]))
    return report


def _cached_fit(fitter, images, weights, initial, cache: Path, progress: bool, prior: bool = False) -> tuple[dict, float]:
    """Fit table and seconds per PSF; reused from ``cache`` when made from the same inputs.

    ``prior``: ``initial`` (with its ``_err`` columns) is also the fit's Gaussian prior (hybrid).

    Fits take seconds per PSF: rerunning an evaluation (e.g. with a newly trained CNN) must not
    redo the ones whose inputs (images, weights, starting point, fitter settings) have not changed.
    """
    import hashlib

    from .fit import MAX_LOG_STEP, PRIOR_PARAMS

    h = hashlib.sha256()
    columns = fitter.names + ([f"{n}_err" for n in fitter.names] if prior else [])
    for a in (images, weights, *(() if initial is None else (np.asarray(initial[n], float) for n in columns))):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr((fitter.names, fitter.max_iter, fitter.tol, MAX_LOG_STEP)).encode())
    if prior:
        h.update(repr(PRIOR_PARAMS).encode())
    digest = h.hexdigest()
    if cache.is_file():
        with np.load(cache) as c:
            if str(c["digest"]) == digest:
                return {n: c["values"][:, i] for i, n in enumerate(fitter.names)}, float(c["seconds"])
    t0 = time.perf_counter()
    table = fitter.fit(images, weights, progress=progress, initial=initial,
                       prior=initial if prior else None).table()
    seconds = (time.perf_counter() - t0) / len(images)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, digest=digest, seconds=seconds, values=np.stack([table[n] for n in fitter.names], axis=1))
    tmp.replace(cache)
    return table, seconds


def _plots(out_dir: Path, truth: dict, results: dict, names: list[str]) -> None:
    from .plots import _pyplot

    plt = _pyplot()
    shown = [n for n in names if n != "theta"][:10]
    for method, (table, _, sel) in results.items():
        fig, axes = plt.subplots(2, (len(shown) + 1) // 2, figsize=(3 * ((len(shown) + 1) // 2), 6), squeeze=False)
        for ax, name in zip(axes.flat, shown):
            t, e = truth[name][sel], table[name]
            ax.scatter(t, e, s=4)
            lo, hi = np.nanmin(t), np.nanmax(t)
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set_title(f"{method}: {name}", fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / f"scatter_{method}.png", dpi=70)
        plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for ax, name in zip(axes, ("r0", "amp", "beta")):
        for method, (table, _, sel) in results.items():
            rel = 100 * np.abs(table[name] - truth[name][sel]) / truth[name][sel]
            ax.hist(np.clip(rel, 0, 100), bins=40, histtype="step", label=method)
        ax.set_xlabel(f"{name} relative error [%] (clipped at 100)", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "errors_hist.png", dpi=70)
    plt.close(fig)
