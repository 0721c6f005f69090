"""``psf evaluate``: CNN vs classical fit vs hybrid on a simulated test set, with Cramér-Rao bounds.

For every parameter: median and 68th-percentile absolute and relative errors, mean relative
error, 90th percentile, Pearson r, time per PSF, and the median ratio of the error to the
Cramér-Rao lower bound computed for each test PSF from the differentiable model and the noise
model (Fisher information J^T W J at the truth). Static modes are in nm; even modes are compared
modulo their common sign (a single in-focus image cannot tell it). The fit starts from the prior
median; the hybrid starts from the CNN's estimate and keeps it as a Gaussian prior of the CNN's
predicted uncertainty (``PsfFitter.fit(prior=...)``).

Fits that did not converge (status ``iteration_cap`` or ``at_bound:...``, see
:class:`~astrolearn.psf.fit.FitResult`) are counted in the report, marked in the scatter plots,
and the statistics of the fit and hybrid are given over all PSFs and over the converged ones.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .fit import fit_failed, status_summary
from .metrics import (
    RELATIVE,
    column_units,
    markdown_table,
    parameter_label,
    parameter_rows,
    parameter_symbol,
    parameter_unit,
)

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


def error_rows(method: str, truth: dict, est: dict, names: list[str], crb: dict | None, seconds: float,
               keep: np.ndarray | None = None, subset: str = "all") -> list[dict]:
    """Error statistics of one method, one row per parameter (NaN where the subset is empty).

    ``keep``: boolean mask of the PSFs to include (e.g. the converged fits), named ``subset``
    in the rows; ``crb`` holds bounds for the first PSFs only (the fitted ones).
    """
    keep = np.ones(len(truth[names[0]]), bool) if keep is None else np.asarray(keep, bool)
    stat = lambda f, x, *a: float(f(x, *a)) if np.isfinite(x).any() else np.nan  # noqa: E731
    rows = []
    for name in names:
        t, e = truth[name][keep], est[name][keep]
        err = np.abs(e - t)
        ok = np.isfinite(err)
        rel = 100 * err / np.abs(t) if name in RELATIVE else np.full_like(err, np.nan)
        row = {"method": method, "parameter": name, "subset": subset, "n": int(ok.sum()),
               "unit": parameter_unit(name) or "-",
               "median_abs": stat(np.nanmedian, err), "p68_abs": stat(np.nanpercentile, err, 68),
               "median_rel_%": stat(np.nanmedian, rel), "p68_rel_%": stat(np.nanpercentile, rel, 68),
               "p90_rel_%": stat(np.nanpercentile, rel, 90), "mean_rel_%": stat(np.nanmean, rel),
               "pearson_r": np.corrcoef(t[ok], e[ok])[0, 1] if ok.sum() > 2 and np.std(t[ok]) > 0 else np.nan,
               "err/CRB_median": np.nan, "s_per_psf": seconds}
        if crb is not None and name in crb:
            k = min(len(keep), len(crb[name]))  # bounds exist on the fitted PSFs only
            ratio = (np.abs(est[name][:k] - truth[name][:k]) / crb[name][:k])[keep[:k]]
            row["err/CRB_median"] = stat(np.nanmedian, ratio)
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
    """Write the comparison report (Markdown, CSV, PNG, ``config.yaml`` with the units) into ``out_dir``.

    Returns the path of ``report.md``.
    """
    from ..io.shards import list_shards, read_shard
    from ..io.tables import write_csv, write_run_config
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
    # method -> (table, seconds per PSF, the test PSFs it estimated, fit status or None)
    results = {"cnn": (comparable(cnn, names), t_cnn, slice(None), None)}
    crb = None
    if compare_fit:
        m = len(images) if n_fit is None else min(n_fit, len(images))
        fitter = PsfFitter(instrument, fit_static=bool(stat_names))
        fit, t_fit = _cached_fit(fitter, images[:m], weights[:m], None, out_dir / "fit_cache.npz", progress)
        results["fit"] = (comparable(fit, names), t_fit, slice(0, m), fit["status"])
        if hybrid:
            cnn_sub = {k: v[:m] for k, v in cnn.items()}
            hyb, t_hyb = _cached_fit(fitter, images[:m], weights[:m], cnn_sub, out_dir / "hybrid_cache.npz", progress,
                                     prior=True)
            results["hybrid"] = (comparable(hyb, names), t_hyb + t_cnn, slice(0, m), hyb["status"])
        crb = cramer_rao(fitter, images[:m], {k: v[:m] for k, v in truth_raw.items()}, weights[:m])
    rows = []
    for method, (table, seconds, sel, status) in results.items():
        t = {n: truth[n][sel] for n in names}
        e = {n: table[n] for n in names}
        if stat_names:
            s_est = align_even_sign(np.stack([e[n] for n in stat_names], 1), np.stack([t[n] for n in stat_names], 1), even)
            e.update({n: s_est[:, i] for i, n in enumerate(stat_names)})
            table.update({n: e[n] for n in stat_names})  # the plots show the aligned modes too
        rows += error_rows(method, t, e, names, crb, seconds)
        columns = {n: e[n] for n in names}
        if status is not None:
            rows += error_rows(method, t, e, names, crb, seconds, keep=~fit_failed(status), subset="converged")
            columns["status"] = status
        write_csv(out_dir / f"{method}.csv", columns, overwrite=True)
    write_csv(out_dir / "errors.csv", {k: [r[k] for r in rows] for k in rows[0]}, overwrite=True)
    n_fitted = results["fit"][2].stop if "fit" in results else 0
    _plots(out_dir, truth, results, names, f"{Path(data_dir).name}, {len(images)} PSFs")
    write_run_config(out_dir / "config.yaml", {
        "command": "psf evaluate", "model": str(Path(model_dir).resolve()), "data": str(Path(data_dir).resolve()),
        "n_test": len(images), "n_fit": n_fitted, "hybrid": hybrid and n_fitted > 0,
        "units": column_units([*names, "status"]),  # of the columns of cnn.csv, fit.csv, hybrid.csv
    })
    report = out_dir / "report.md"
    report.write_text(_report(rows, results, names, model_dir, data_dir, instrument, len(images), n_fitted))
    return report


METHOD_TITLES = {"cnn": "CNN", "fit": "least-squares fit", "hybrid": "hybrid (fit from and held by the CNN)"}
#: Columns of the report's error table (errors.csv has them all, with plain parameter names).
REPORT_COLUMNS = ["method", "parameter", "subset", "n", "unit", "median_abs", "p68_abs", "median_rel_%", "p68_rel_%",
                  "mean_rel_%", "p90_rel_%", "pearson_r", "err/CRB_median", "s_per_psf"]


def _report(rows, results, names, model_dir, data_dir, instrument, n_images: int, n_fitted: int) -> str:
    """report.md: parameters and units, fit failures, error statistics."""
    failures = []
    for method, (_, _, _, status) in results.items():
        if status is not None:
            s = status_summary(status)
            failures.append({"method": method, "fits": s["n"], "converged": s["n"] - s["failed"],
                             "iteration cap": s["iteration_cap"], "at a bound": s["at_bound"],
                             "at a bound, by parameter": ", ".join(f"{p} {k}" for p, k in s["by_parameter"].items())
                             or "-"})
    text = [
        "# PSF estimation: CNN vs least-squares fit vs hybrid\n",
        f"Model: `{model_dir}`; test data: `{data_dir}` ({n_images} simulated PSFs, {instrument.name}, "
        f"{instrument.wavelength_um} um); CNN on all of them"
        + (f", fit and hybrid on the first {n_fitted}." if n_fitted else "; no fit (--compare none).") + "\n",
        "Fit: from the prior median. Hybrid: from the CNN's estimate, with the CNN's estimate and"
        " uncertainty as a Gaussian prior on r0, C, A, alpha, beta.\n",
        "## Parameters\n",
        "CSV files keep the column names; reports show maoppy's `bck` and `amp` as C and A "
        "(see docs/parameters.md). PSD parameters at the image wavelength, r0 at 500 nm.\n",
        markdown_table(parameter_rows(names), ["column", "symbol", "unit", "meaning"]),
    ]
    if failures:
        text += [
            "\n## Fit failures\n",
            "A fit is *at a bound* when it ends with a parameter on a bound of the fit (the value is not an"
            " unconstrained minimum and its error is not meaningful), at the *iteration cap* when it stopped at"
            " `max_iter` without converging (a fit both capped and at a bound counts as at a bound). C (bck) = 0 is"
            " the edge of the model's domain, not a bound: such a fit is converged. The status of each PSF is the"
            " `status` column of `fit.csv` / `hybrid.csv`.\n",
            markdown_table(failures),
        ]
    text += [
        "\n## Errors\n",
        "`median_abs`, `p68_abs`: median and 68th percentile of |estimate - truth|, in `unit`; `*_rel_%`: the same"
        " (and the mean, 90th percentile) of |estimate - truth| / |truth| in % (scale parameters only);"
        " `pearson_r`: correlation of estimate and truth; `err/CRB_median`: median of |estimate - truth| over the"
        " Cramér-Rao bound (1 sigma, at the truth, on the fitted PSFs); `s_per_psf`: seconds per PSF. `subset`:"
        " `all` PSFs the method estimated, or only the `converged` fits; `n`: PSFs in it. Static modes compared"
        " modulo their common sign for even modes; ratio/theta in the canonical convention ratio >= 1.\n",
        markdown_table([dict(r, parameter=parameter_symbol(r["parameter"])) for r in rows], REPORT_COLUMNS),
        "\nPlots: `scatter_<method>.png` (estimate vs truth of every parameter; failed fits in red),"
        " `errors_hist.png` (relative errors of r0, A, beta).\n",
    ]
    return "\n".join(text)


def _cached_fit(fitter, images, weights, initial, cache: Path, progress: bool, prior: bool = False) -> tuple[dict, float]:
    """Fit table (with ``status``) and seconds per PSF; reused from ``cache`` when made from the same inputs.

    ``prior``: ``initial`` (with its ``_err`` columns) is also the fit's Gaussian prior (hybrid).

    Fits take seconds per PSF: rerunning an evaluation (e.g. with a newly trained CNN) must not
    redo the ones whose inputs (images, weights, starting point, fitter settings) have not changed,
    and an interrupted one resumes: the cache is rewritten after each of the fitter's batches (the
    batches of a one-shot fit, so the table is the same).
    """
    import hashlib

    from tqdm import tqdm

    from .fit import MAX_LOG_STEP, PRIOR_PARAMS

    h = hashlib.sha256()
    columns = fitter.names + ([f"{n}_err" for n in fitter.names] if prior else [])
    for a in (images, weights, *(() if initial is None else (np.asarray(initial[n], float) for n in columns))):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr((fitter.names, fitter.max_iter, fitter.tol, MAX_LOG_STEP,
                   getattr(fitter, "even", None) is not None and fitter.even.tolist())).encode())
    if prior:
        h.update(repr(PRIOR_PARAMS).encode())
    digest = h.hexdigest()
    n = len(images)
    values, status, seconds = np.full((n, len(fitter.names)), np.nan), np.full(n, "", dtype=object), 0.0
    done = 0
    if cache.is_file():
        with np.load(cache) as c:
            if str(c["digest"]) == digest and "done" in c.files:  # older caches (no "done"): refit
                done, seconds = int(c["done"]), float(c["seconds"]) * int(c["done"])
                values[:done], status[:done] = c["values"][:done], c["status"][:done]
    bar = tqdm(total=n, initial=done, desc=f"fit {cache.stem}", unit="PSF", disable=not progress or done == n)
    while done < n:
        part = slice(done, min(done + fitter.batch, n))
        start = None if initial is None else {k: np.asarray(v)[part] for k, v in initial.items()}
        t0 = time.perf_counter()
        table = fitter.fit(images[part], weights[part], progress=False, initial=start,
                           prior=start if prior else None).table()
        seconds += time.perf_counter() - t0
        values[part] = np.stack([table[k] for k in fitter.names], axis=1)
        status[part] = table["status"]
        done = part.stop
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, digest=digest, seconds=seconds / done, done=done, values=values,
                 status=np.asarray(status, dtype=str))
        tmp.replace(cache)
        bar.update(part.stop - part.start)
    bar.close()
    table = {k: values[:, i] for i, k in enumerate(fitter.names)}
    return dict(table, status=np.asarray(status, dtype=str)), seconds / max(n, 1)


def _plots(out_dir: Path, truth: dict, results: dict, names: list[str], test_set: str) -> None:
    """``scatter_<method>.png`` (every parameter) and ``errors_hist.png``; ``test_set`` names the data."""
    from ..plotting import pyplot

    plt = pyplot()
    from matplotlib.ticker import NullFormatter

    ncol = int(np.ceil(np.sqrt(len(names))))
    nrow = int(np.ceil(len(names) / ncol))
    for method, (table, _, sel, status) in results.items():
        failed = fit_failed(status) if status is not None else np.zeros(len(table[names[0]]), bool)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.0 * nrow), squeeze=False)
        for ax, name in zip(axes.flat, names):
            t, e = truth[name][sel], table[name]
            ax.scatter(t[~failed], e[~failed], s=6, color="tab:blue", label=f"converged ({(~failed).sum()})"
                       if status is not None else f"estimates ({len(t)})")
            if failed.any():
                ax.scatter(t[failed], e[failed], s=14, marker="x", color="tab:red",
                           label=f"failed fits ({failed.sum()})")
            lo, hi = np.nanmin(t), np.nanmax(t)
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="estimate = truth")
            both = np.r_[t, e]
            if np.all(both > 0) and both.max() > 30 * both.min():  # spread over decades (r0 fits that ran off)
                ax.set(xscale="log", yscale="log")
                for axis in (ax.xaxis, ax.yaxis):
                    axis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(f"true {parameter_label(name)}", fontsize=8)
            ax.set_ylabel(f"estimated {parameter_label(name)}", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in axes.flat[len(names):]:
            ax.set_visible(False)
        axes.flat[0].legend(fontsize=7)
        n = len(table[names[0]])
        fig.suptitle(f"{METHOD_TITLES[method]}: estimate vs truth, the first {n} PSFs of the test set ({test_set})",
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(out_dir / f"scatter_{method}.png", dpi=70)
        plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    for ax, name in zip(axes, ("r0", "amp", "beta")):
        for method, (table, _, sel, _) in results.items():
            rel = 100 * np.abs(table[name] - truth[name][sel]) / truth[name][sel]
            ax.hist(np.clip(rel, 0, 100), bins=40, range=(0, 100), histtype="step",
                    label=f"{METHOD_TITLES[method]} ({len(rel)})")
        ax.set_xlabel(f"{parameter_symbol(name)} relative error [%] (clipped at 100)", fontsize=8)
        ax.set_ylabel("PSFs", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle(f"Relative errors on the test set ({test_set}; the first n PSFs of each method, failed fits "
                 "included)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_dir / "errors_hist.png", dpi=70)
    plt.close(fig)
