"""``astrolearn demo``: every problem end to end at a small size on the CPU (a few minutes).

PSF: simulate aberration-free NIRC2 PSFs, run the shipped CNN trained for such images on all of
them, fit a subset with the classical least-squares method, and compare both on the same PSFs.
Redshift: simulate NISP spectra, estimate redshifts and log PDFs, evaluate them against the truth,
then compare the shipped reliability classifier with the engine's own redshift probability and
with the descriptors + GBM baseline. The report (Markdown tables + PNG plots) goes under
``--out``; each step runs the same code as the corresponding ``astrolearn`` command.
"""

from __future__ import annotations

import time
from pathlib import Path

from .cliargs import nonneg_int, positive_int

#: The PSF parameters the demo tabulates (theta is undefined for round PSFs, ratio ~ 1).
PSF_SHOWN = ("r0", "bck", "amp", "alpha", "ratio", "beta")


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
                f"--n-spectra {args.n_spectra} --seed {args.seed}`\n",
                "Notation: `a +- b` is a value and its 1-sigma uncertainty (binomial standard error for a rate).\n"]
    sections.append(psf_demo(out / "psf", args.n, args.n_fit, args.seed))
    sections.append(redshift_demo(out / "redshift", args.n_spectra, args.seed))
    sections.append(spectra_demo(out / "spectra", args.n_spectra, args.seed))
    sections.append(cophase_demo(out / "cophasing", args.seed))
    sections.append(_figure_list(out))
    report.write_text("\n".join(sections))
    print(f"demo report: {report}")
    return 0


def psf_demo(out: Path, n: int, n_fit: int, seed: int) -> str:
    """CNN vs least-squares fit on simulated aberration-free NIRC2 PSFs; returns the Markdown section."""
    import numpy as np

    from .io.shards import read_shard
    from .io.tables import write_csv
    from .psf.evaluate import comparable
    from .psf.fit import PsfFitter, fit_failed, status_summary
    from .psf.instruments import load_instrument
    from .psf.learn import PsfEstimator, packaged_model
    from .psf.metrics import markdown_table, parameter_rows, parameter_symbol, summary_row
    from .psf.noise import variance_from_image
    from .psf.plots import plot_data_model_residual
    from .psf.simulate import simulate

    inst = load_instrument("nirc2")
    t0 = time.perf_counter()
    paths = simulate(inst, n, seed, out / "data", {"static": False}, overwrite=True, progress=False)
    t_sim = time.perf_counter() - t0
    shards = [read_shard(p, instrument="nirc2") for p in paths]
    images = np.concatenate([s.arrays["images"] for s in shards]).astype(float)
    truth = comparable({name: np.concatenate([s.column(name) for s in shards]) for name in PSF_SHOWN + ("theta",)},
                       list(PSF_SHOWN) + ["theta"])

    # The images have no static aberrations: the shipped model trained without them is the
    # network's counterpart of fitting without static modes (psf predict --static none).
    model_dir = packaged_model(inst, static=False)
    estimator = PsfEstimator(model_dir)
    t0 = time.perf_counter()
    cnn = comparable(estimator.predict(images), list(PSF_SHOWN) + ["theta"])
    t_cnn = (time.perf_counter() - t0) / n

    fitter = PsfFitter(inst, fit_static=False)
    weights = 1.0 / variance_from_image(images[:n_fit], inst)
    t0 = time.perf_counter()
    result = fitter.fit(images[:n_fit], weights, progress=True)
    t_fit = (time.perf_counter() - t0) / n_fit
    fit = comparable(result.table(), list(PSF_SHOWN) + ["theta"])
    write_csv(out / "fit.csv", {"index": np.arange(n_fit), **result.table()}, overwrite=True)
    write_csv(out / "cnn.csv", {"index": np.arange(n), **{k: cnn[k] for k in PSF_SHOWN}}, overwrite=True)

    def rows(method, est, sel):
        return [dict(summary_row(name, truth[name][sel], est[name]), method=method, parameter=parameter_symbol(name))
                for name in PSF_SHOWN]

    same = np.arange(n_fit)
    ok = same[~fit_failed(result.status)]
    cnn_same = {k: v[same] for k, v in cnn.items()}
    cnn_all = rows(f"CNN ({n} PSFs)", cnn, slice(None))
    paired = rows("fit", fit, same) + rows("CNN", cnn_same, same)
    if 0 < len(ok) < n_fit:  # the same statistics without the fits that did not converge
        paired += rows(f"fit, converged ({len(ok)})", {k: v[ok] for k, v in fit.items()}, ok)
        paired += rows(f"CNN, same {len(ok)}", {k: v[ok] for k, v in cnn.items()}, ok)
    failures = status_summary(result.status)
    plot_data_model_residual(out / "fit_examples.png", images[:n_fit], result.models, status=result.status)
    _scatter(out / "scatter_same_psfs.png", truth, {"fit": fit, "CNN": cnn_same}, same)
    cols = ["method", "parameter", "median", "p68", "p90", "pearson_r", "n"]
    return "\n".join([
        "## PSF (Keck/NIRC2, PSFAO19)\n",
        f"Simulated {n} noisy PSFs without static aberrations (magnitude 12-14, {inst.npix}x{inst.npix} pixels, "
        f"{inst.wavelength_um} um) in {t_sim:.1f} s.\n",
        f"- CNN: the shipped model `{model_dir.name}` (trained without static aberrations, as these images are; "
        f"`astrolearn psf predict --static none`), on all {n} PSFs: {t_cnn * 1e3:.2f} ms per PSF.",
        f"- Fit: weighted least squares from the prior median, without static modes (`astrolearn psf fit "
        f"--static none`), on the first {n_fit} PSFs: {t_fit:.2f} s per PSF; "
        + (f"{failures['failed']} did not converge ({failures['text']}; `status` column of `psf/fit.csv`)."
           if failures["failed"] else "all converged.") + "\n",
        "Errors are relative, in % of the true value (median, 68th and 90th percentiles of |estimate - truth| / "
        "truth), with the Pearson correlation of estimate and truth; ratio is taken >= 1. The parameters "
        "(`docs/parameters.md`):\n",
        markdown_table(parameter_rows(PSF_SHOWN), ["column", "symbol", "unit", "meaning"]) + "\n",
        f"### Fit and CNN on the same {n_fit} PSFs\n",
        markdown_table(paired, cols),
        f"\n### CNN on all {n} PSFs\n",
        markdown_table(cnn_all, cols),
        "",
    ])


def _scatter(path: Path, truth: dict, methods: dict, sel) -> None:
    """True vs estimated value of each shown parameter, one colour per method."""
    from .psf.metrics import parameter_label
    from .plotting import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, len(PSF_SHOWN), figsize=(3 * len(PSF_SHOWN), 3.2), squeeze=False)
    for ax, name in zip(axes[0], PSF_SHOWN):
        t = truth[name][sel]
        for method, est in methods.items():
            ax.scatter(t, est[name], s=10, label=method)
        ax.plot([t.min(), t.max()], [t.min(), t.max()], "k--", lw=0.8)
        if name == "r0":  # a failed fit's r0 lands at its bound, ~24 m at 500 nm
            ax.set_yscale("log")
        ax.set_xlabel(f"true {parameter_label(name)}", fontsize=8)
        ax.set_ylabel(f"estimated {parameter_label(name)}", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"the same {len(t)} simulated NIRC2 PSFs, without static aberrations", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def redshift_demo(out: Path, n: int, seed: int) -> str:
    """Simulate NISP spectra, estimate and evaluate redshifts, compare reliabilities; Markdown section."""
    import csv

    from .cli import main
    from .redshift.reliability.classifier import ReliabilityModel
    from .redshift.reliability.dataset import open_estimates
    from .redshift.reliability.report import METHOD_NAMES, evaluate_reliability
    from .redshift.reliability.train import load_baseline

    t0 = time.perf_counter()
    main(["redshift", "simulate", "--n", str(n), "--seed", str(seed), "--out", str(out / "spectra"),
          "--overwrite", "--no-progress"])
    main(["redshift", "estimate", str(out / "spectra"), "--out", str(out / "estimates"), "--overwrite",
          "--no-progress"])
    t_est = time.perf_counter() - t0
    main(["redshift", "evaluate", str(out / "estimates"), "--overwrite"])
    with open(out / "estimates" / "evaluation" / "evaluation.csv") as f:
        rates = [r for r in csv.DictReader(f) if r["table"] in ("all", "sample")]
    rate_lines = ["| spectra | n | success rate |", "|---|---:|---:|"]
    rate_lines += [f"| {r['bin']} | {r['n']} | {float(r['rate']):.3f} +- {float(r['rate_err']):.3f} |" for r in rates]

    model = ReliabilityModel()  # the shipped classifier, as redshift predict/run use it
    baseline = load_baseline(model.baseline_file, missing_ok=True)
    summary = evaluate_reliability(model, open_estimates(out / "estimates"), out / "reliability", baseline,
                                   overwrite=True)
    comp = {r["method"]: r for r in summary["thresholds"] if r["class"] == "success" and r["purity_target"] == 0.8}
    auc = {r["method"]: r["roc_auc"] for r in summary["auc"] if r["class"] == "success"}
    rel_lines = ["| method | completeness at purity 0.8 | purity reached | ROC AUC |", "|---|---:|---:|---:|"]
    rel_lines += [f"| {METHOD_NAMES[m]} | {r['completeness']:.3f} | {r['purity']:.3f} | {auc[m]:.3f} |"
                  for m, r in comp.items()]
    n_train = model.meta["training"]["n_train"]
    return "\n".join([
        "## Redshift (Euclid NISP-like spectra)\n",
        f"Simulated {n} NISP red-grism spectra (z 0.5-2.5, 10 % without emission lines) and estimated their "
        f"redshifts and log PDFs with the template-fitting engine in {t_est:.1f} s.\n",
        "A redshift is a *success* when |z_best - z_true| < 0.003 (1 + z_true); the success rate is the "
        "fraction of spectra whose best redshift is a success. Most failures are faint spectra whose Halpha line "
        "is under the noise or outside the 1.2-1.9 um window (full tables: "
        "[`redshift/estimates/evaluation/evaluation.md`](redshift/estimates/evaluation/evaluation.md)).\n",
        "\n".join(rate_lines),
        "\n### Which redshifts to trust\n",
        f"Each method scores every redshift; keeping those above a threshold selects a sample. Purity: the "
        f"fraction of successes in it; completeness: the fraction of all successes it keeps. The shipped "
        f"reliability CNN ({model.name}, trained on the log PDFs of {n_train} simulated spectra) against the "
        "engine's own redshift probability and the descriptors + gradient-boosting baseline (Jamal et al. 2018"
        + (", shipped beside the CNN" if baseline is not None else "; not shipped with this model, so absent")
        + f"). {summary['n']} spectra; thresholds picked on these same spectra, so the figures describe this "
        "sample (`benchmarks/RESULTS.md` has them on a held-out set):\n",
        "\n".join(rel_lines),
        "\nFull report: [`redshift/reliability/report.md`](redshift/reliability/report.md). Reliability of "
        "each redshift of your own spectra: `astrolearn redshift run SPECTRA --out DIR`.\n",
    ])


def spectra_demo(out: Path, n: int, seed: int) -> str:
    """Simulate stars, galaxies and QSOs on the NISP grid and classify them; Markdown section."""
    from .cli import main

    main(["spectra", "simulate", "--n", str(n), "--seed", str(seed), "--out", str(out / "spectra"), "--overwrite",
          "--no-progress"])
    main(["spectra", "evaluate", str(out / "spectra"), "--out", str(out / "evaluation"), "--overwrite"])
    confusion = (out / "evaluation" / "confusion.md").read_text().strip()
    return "\n".join([
        "## Star / galaxy / QSO classes (NISP-like spectra)\n",
        f"Simulated {n} spectra (a third each: real SpeX and Basel stars, Vanden Berk quasars with "
        "intergalactic absorption, galaxies of the redshift simulator; 20 % cut short of the window) and "
        "classified them with the shipped `nisp` CNN, as `astrolearn spectra predict` does for your files. "
        "Confusion matrix:\n",
        confusion,
        "\nPurity and completeness per class: [`spectra/evaluation/purity_completeness.csv`]"
        "(spectra/evaluation/purity_completeness.csv). The CNN against the template-evidence and random-forest "
        "baselines on 20 000 held-out spectra, and on real survey spectra: `benchmarks/RESULTS.md`.\n",
    ])


def cophase_demo(out: Path, seed: int, n: int = 16) -> str:
    """The petal-cophasing closed loop with the shipped CNN and with least squares; Markdown section."""
    import numpy as np

    from .cli import main
    from .io.tables import read_csv

    rows = ["| estimator | WFE before [nm] | after 1 | after 2 | Strehl after 1 | after 2 | wall time [s] |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for estimator, label in (("cnn", "CNN (shipped `azimov`)"), ("lsq", "phase-diversity least squares")):
        t0 = time.perf_counter()
        main(["cophase", "loop", "--n", str(n), "--iterations", "2", "--seed", str(seed), "--estimator", estimator,
              "--out", str(out / estimator), "--overwrite"])
        seconds = time.perf_counter() - t0
        table = read_csv(out / estimator / "loop.csv")
        wfe, strehl = (np.asarray(table[c], float).reshape(n, 3) for c in ("wfe_nm", "strehl"))
        med = np.median(wfe, axis=0)
        rows.append(f"| {label} | {med[0]:.0f} | {med[1]:.1f} | {med[2]:.1f} | {np.median(strehl[:, 1]):.3f} | "
                    f"{np.median(strehl[:, 2]):.3f} | {seconds:.1f} |")
    return "\n".join([
        "## Petal cophasing (AZIMOV-like deployable telescope)\n",
        f"{n} random misalignments of the 4 petals (pistons up to +-300 nm, tip/tilt up to +-150 nm RMS), each "
        "measured from an in-focus + defocused image pair (600-700 nm), corrected, measured again: median "
        "residual wavefront error (WFE) and Strehl ratio at 650 nm after each correction (goal: WFE < 15 nm).\n",
        "\n".join(rows),
        "\nPer-case curves: [`cophasing/cnn/loop.png`](cophasing/cnn/loop.png), "
        "[`cophasing/lsq/loop.png`](cophasing/lsq/loop.png); 500-case figures, the Cramér-Rao bound and the "
        "capture range: `benchmarks/RESULTS.md`.\n",
    ])


def _figure_list(out: Path) -> str:
    """Links to every PNG the demo wrote."""
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    return "\n".join(["## Figures\n", *[f"- [`{p}`]({p})" for p in pngs], ""])
