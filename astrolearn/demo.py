"""``astrolearn demo``: every problem end to end at a small size on the CPU (a few minutes).

PSF: simulate NIRC2 PSFs, fit a subset with the classical least-squares method and run the
shipped CNN on all. Redshift: simulate NISP spectra, estimate redshifts and log PDFs, evaluate
them against the truth and, when a reliability classifier is shipped, rate each redshift. The
report (Markdown tables + PNG plots) goes under ``--out``; each step runs the same code as the
corresponding ``astrolearn`` command.
"""

from __future__ import annotations

import time
from pathlib import Path

from .cliargs import nonneg_int, positive_int


def register(sub) -> None:
    p = sub.add_parser("demo", help="run every problem end to end at a small size (CPU, minutes)")
    p.add_argument("--out", default="demo-output", help="report directory (default: ./demo-output)")
    p.add_argument("--n", type=positive_int, default=200, help="PSFs to simulate")
    p.add_argument("--n-fit", type=positive_int, help="PSFs fitted with the classical method (default: 16, at most --n)")
    p.add_argument("--n-spectra", type=positive_int, default=300, help="NISP spectra to simulate")
    p.add_argument("--seed", type=nonneg_int, default=2024)
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from .errors import UserError

    if args.n_fit is None:
        args.n_fit = min(16, args.n)
    if args.n_fit > args.n:
        raise UserError(f"--n-fit {args.n_fit} is more than the {args.n} PSFs simulated (--n)")
    out = Path(args.out)
    report = out / "README.md"
    if report.exists() and not args.overwrite:
        raise UserError(f"{out}: a demo report already exists (use --overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    sections = ["# astrolearn demo\n", f"Command: `astrolearn demo --out {args.out} --n {args.n} --n-fit {args.n_fit} "
                f"--n-spectra {args.n_spectra} --seed {args.seed}`\n"]
    sections.append(psf_demo(out / "psf", args.n, args.n_fit, args.seed))
    sections.append(redshift_demo(out / "redshift", args.n_spectra, args.seed))
    report.write_text("\n".join(sections))
    print(f"demo report: {report}")
    return 0


def psf_demo(out: Path, n: int, n_fit: int, seed: int) -> str:
    """Simulate + classical fit on NIRC2; returns the Markdown section."""
    import numpy as np

    from .io.shards import read_shard
    from .io.tables import write_csv
    from .psf.fit import PsfFitter
    from .psf.instruments import load_instrument
    from .psf.metrics import markdown_table, summary_row
    from .psf.noise import variance_from_image
    from .psf.plots import plot_data_model_residual
    from .psf.simulate import simulate

    inst = load_instrument("nirc2")
    t0 = time.perf_counter()
    shards = simulate(inst, n, seed, out / "data", {"static": False}, overwrite=True)
    t_sim = time.perf_counter() - t0
    shard = read_shard(shards[0], instrument="nirc2")
    images = shard.arrays["images"][:n_fit].astype(float)
    fitter = PsfFitter(inst, fit_static=False)
    t0 = time.perf_counter()
    result = fitter.fit(images, 1.0 / variance_from_image(images, inst), progress=True)
    t_fit = (time.perf_counter() - t0) / n_fit
    cols = {"index": np.arange(n_fit)}
    cols.update(result.table())
    write_csv(out / "fit.csv", cols, overwrite=True)
    rows = [dict(summary_row(name, shard.column(name)[:n_fit], result.values[:, i]), method="fit")
            for i, name in enumerate(result.names[:7]) if name not in ("theta", "ratio")]
    cnn_text = ""
    from .psf.learn import PACKAGED, PsfEstimator

    if (PACKAGED / inst.name).exists():
        estimator = PsfEstimator(PACKAGED / inst.name)
        all_images = shard.arrays["images"].astype(float)
        t0 = time.perf_counter()
        cnn = estimator.predict(all_images)
        t_cnn = (time.perf_counter() - t0) / len(all_images)
        rows += [dict(summary_row(name, shard.column(name), cnn[name]), method="cnn (shipped model)")
                 for name in ("r0", "bck", "amp", "alpha", "beta")]
        cnn_text = (f"The shipped CNN estimated all {len(all_images)} PSFs ({t_cnn * 1e3:.2f} ms per PSF); "
                    "its errors are over all of them, the fit's over the fitted subset.\n")
    plot_data_model_residual(out / "fit_examples.png", images, result.models)
    _scatter(out / "fit_scatter.png", {r["parameter"]: (shard.column(r["parameter"])[:n_fit],
                                                        result.values[:, result.names.index(r["parameter"])])
                                       for r in rows if r["method"] == "fit"})
    return "\n".join([
        "## PSF (Keck/NIRC2, PSFAO19)\n",
        f"Simulated {n} noisy PSFs (magnitude 12-14, 128x128, {inst.wavelength_um} um) in {t_sim:.1f} s; "
        f"fitted {n_fit} with weighted least squares from the prior median ({t_fit:.2f} s per PSF).\n",
        cnn_text,
        "Relative errors (%):\n",
        markdown_table(rows, ["method", "parameter", "unit", "median", "p68", "p90", "pearson_r", "n"]),
        "\nPlots: `psf/fit_examples.png` (data, model, residual), `psf/fit_scatter.png` (true vs fitted).\n",
    ])


def _scatter(path: Path, pairs: dict) -> None:
    from .psf.plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(pairs), figsize=(3 * len(pairs), 3), squeeze=False)
    for ax, (name, (truth, est)) in zip(axes[0], pairs.items()):
        ax.scatter(truth, est, s=8)
        lo, hi = min(truth.min(), est.min()), max(truth.max(), est.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("true", fontsize=8)
        ax.set_ylabel("estimated", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def redshift_demo(out: Path, n: int, seed: int) -> str:
    """Simulate NISP spectra, estimate and evaluate redshifts (+ reliability); Markdown section."""
    from .cli import main
    from .redshift.reliability.classifier import PACKAGED_DIR

    t0 = time.perf_counter()
    main(["redshift", "simulate", "--n", str(n), "--seed", str(seed), "--out", str(out / "spectra"),
          "--overwrite", "--quiet"])
    main(["redshift", "estimate", str(out / "spectra"), "--out", str(out / "estimates"), "--overwrite", "--quiet"])
    t_est = time.perf_counter() - t0
    main(["redshift", "evaluate", str(out / "estimates"), "--overwrite"])
    text = [f"## Redshift (Euclid NISP-like spectra)\n",
            f"Simulated {n} spectra and estimated their redshifts and log PDFs in {t_est:.1f} s.\n",
            (out / "estimates" / "evaluation" / "evaluation.md").read_text()]
    if (PACKAGED_DIR / "classical.json").exists():
        main(["redshift", "predict", str(out / "estimates"), "--out", str(out / "reliability.csv"), "--overwrite"])
        text.append("Reliability of every redshift (shipped classifier): `redshift/reliability.csv`.\n")
    return "\n".join(text)
