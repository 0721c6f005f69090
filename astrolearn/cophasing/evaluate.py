"""``cophase evaluate``: errors of the CNN (and of least squares) on a simulated test set."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from .optics import observable


def error_stats(optics, estimate: np.ndarray, truth: np.ndarray, std: np.ndarray | None = None) -> dict:
    """Residual WFE [nm] of estimate - truth (observable modes) and per-mode RMS errors [nm].

    With ``std``, also the spread of the pulls (error / std) over all modes: 1 for calibrated errors.
    """
    err = observable(estimate) - observable(truth)
    wfe = optics.wfe_nm(err)
    out = {"n": len(err), "wfe_median_nm": float(np.median(wfe)), "wfe_p90_nm": float(np.percentile(wfe, 90)),
           "rms_error_nm": {n: float(np.sqrt(np.mean(err[:, j] ** 2))) for j, n in enumerate(optics.names)}}
    if std is not None:
        z = err / std
        out["pull_std"] = float(np.std(z))
    return out


def evaluate(model, data, out, compare: bool = True, n_fit: int = 50, progress: bool = True,
             lsq_options: dict | None = None) -> Path:
    """Write ``out/report.md`` and ``out/metrics.json``; returns the report's path.

    ``lsq_options``: ``starts``, ``max_iter`` of :class:`~astrolearn.cophasing.fit.LsqFitter`.
    """
    from ..io.shards import list_shards, read_shard
    from ..io.tables import write_run_config
    from .fit import LsqFitter
    from .learn import CophaseEstimator

    estimator = CophaseEstimator(model)
    shards = [read_shard(p, domain="cophase") for p in list_shards(data)]
    if shards[0].meta.get("instrument") != estimator.optics.to_dict():
        raise UserError(f"{shards[0].path}: simulated with other optics than the model {estimator.dir}")
    images = np.concatenate([s.arrays["images"] for s in shards]).astype(np.float64)
    truth = np.concatenate([s.params[:, :estimator.optics.n_modes] for s in shards])
    estimator.check(images, data)
    start = time.perf_counter()
    cnn, cnn_std = estimator.estimate(images)
    cnn_s = (time.perf_counter() - start) / len(images)
    metrics = {"model": str(estimator.dir.resolve()), "data": str(Path(data).resolve()),
               "cnn": {**error_stats(estimator.optics, cnn, truth, cnn_std), "seconds_per_estimate": cnn_s}}
    if compare:
        k = min(n_fit, len(images))
        fitter = LsqFitter.from_meta(estimator.meta, **(lsq_options or {}))
        start = time.perf_counter()
        fit = fitter.fit(images[:k], progress=progress)
        metrics["lsq"] = {**error_stats(estimator.optics, fit.modes, truth[:k], fit.std),
                          "seconds_per_estimate": (time.perf_counter() - start) / k}
        metrics["cnn_on_lsq_subset"] = error_stats(estimator.optics, cnn[:k], truth[:k], cnn_std[:k])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    lines = [f"# Cophasing evaluation\n\nmodel `{metrics['model']}`, data `{metrics['data']}`\n",
             "| estimator | n | residual WFE median [nm] | p90 [nm] | pull std | s per estimate |", "|---|---|---|---|---|---|"]
    for name in ("cnn", "cnn_on_lsq_subset", "lsq"):
        if name in metrics:
            m = metrics[name]
            lines.append(f"| {name} | {m['n']} | {m['wfe_median_nm']:.2f} | {m['wfe_p90_nm']:.2f} | "
                         f"{m.get('pull_std', float('nan')):.2f} | {m.get('seconds_per_estimate', float('nan')):.3g} |")
    lines += ["", "RMS error per mode [nm] (common piston removed):", "",
              "| mode | " + " | ".join(n for n in ("cnn", "lsq") if n in metrics) + " |",
              "|---|" + "---|" * sum(n in metrics for n in ("cnn", "lsq"))]
    for mode in estimator.optics.names:
        lines.append(f"| {mode} | " + " | ".join(f"{metrics[n]['rms_error_nm'][mode]:.2f}"
                                                  for n in ("cnn", "lsq") if n in metrics) + " |")
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    write_run_config(out / "config.yaml", {"command": "cophase evaluate", **{k: v for k, v in metrics.items()
                                                                              if k in ("model", "data")},
                                           "compare": compare, "n_fit": n_fit})
    return report
