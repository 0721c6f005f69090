"""``astrolearn redshift train|predict|evaluate-reliability|run``: the reliability verbs.

:func:`register_verbs` adds them to the ``astrolearn redshift`` sub-parsers; heavy imports happen
inside the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ...cliargs import add_progress_flag, add_trainer_args, positive_int
from .labels import EUCLID_WINDOW, SCHEMES, TOLERANCE


def register_verbs(verbs) -> None:
    """Add ``train``, ``predict``, ``evaluate-reliability`` and ``run`` to the ``redshift`` verbs.

    Parameters
    ----------
    verbs : argparse._SubParsersAction
        What ``parser.add_subparsers()`` of ``astrolearn redshift`` returned.
    """
    p = verbs.add_parser("train", help="train a redshift-reliability CNN on estimates of simulated spectra",
                         description="Train the reliability CNN (and the descriptors + GBM baseline) on the "
                         "PDFs of simulated spectra. DATA: estimate output directories of simulated spectra, "
                         "or directories of reliability shards.")
    p.add_argument("data", nargs="+", help="estimate output(s) of simulated spectra, or reliability shards")
    p.add_argument("--out", required=True, help="run directory (shards, checkpoints, model metadata)")
    p.add_argument("--labels", choices=list(SCHEMES), default="classical",
                   help="classical: |dz|/(1+z) < tolerance; euclid: also 0.9 < z_true < 1.8; "
                   "3class: success / line confusion / other failure (default classical)")
    p.add_argument("--tolerance", type=float, help=f"success tolerance on |dz|/(1+z) (default {TOLERANCE})")
    p.add_argument("--zwindow", type=float, nargs=2, metavar=("ZMIN", "ZMAX"),
                   help=f"true-redshift window of a success (euclid default: {EUCLID_WINDOW[0]} {EUCLID_WINDOW[1]})")
    p.add_argument("--channels", default="pdf,log", help="network input: pdf, log or pdf,log (default)")
    p.add_argument("--pool", type=positive_int, default=16,
                   help="max-pool the log PDF by this many grid points before the network (default 16)")
    p.add_argument("--config", help="training YAML (default: reliability_cnn.yaml of the package; "
                   "or an example name such as zpdf_cnn)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set optimizer.lr=1e-3 (repeatable)")
    p.add_argument("--no-baseline", action="store_true", help="skip the descriptors + GBM baseline")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    add_trainer_args(p)
    p.set_defaults(func=cmd_train)

    p = verbs.add_parser("predict", help="reliability of redshift estimates (p_success per spectrum)",
                         description="Classify the PDFs of an estimate output; writes reliability.csv: the "
                         "columns of redshifts.csv, in input order, plus p_success (3-class models: also "
                         "p_confusion, p_failure).")
    p.add_argument("estimates", help="estimate output directory (astrolearn redshift estimate)")
    _add_model_arg(p)
    p.add_argument("--out", help="output CSV (default: ESTIMATES/reliability.csv)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = verbs.add_parser("evaluate-reliability",
                         help="purity/completeness of the reliability CNN vs redshift probability vs descriptors+GBM",
                         description="Report (Markdown, CSV, PNG) on estimates of simulated spectra, labelled "
                         "with the model's scheme.")
    p.add_argument("data", help="estimate output of simulated spectra, or reliability shards")
    _add_model_arg(p)
    p.add_argument("--baseline", help="descriptors + GBM baseline pickle (default: the one trained or shipped "
                   "with the model, if any)")
    p.add_argument("--validation", metavar="ESTIMATES",
                   help="validation estimates (simulated, not DATA): thresholds chosen on them, applied to DATA "
                   "with bootstrap intervals")
    p.add_argument("--by", action="append", metavar="COLUMN",
                   help="truth column to bin the performance by (repeatable; default halpha_flux, halpha_snr)")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = verbs.add_parser("run", help="estimate redshifts then their reliability, in one command",
                         description="astrolearn redshift estimate on the model's redshift grid, then "
                         "predict: OUT holds the estimate outputs and reliability.csv. Rerun to resume.")
    p.add_argument("spectra", help="text 'wave flux err', FITS batch, DESI coadd, SDSS/BOSS, 6dFGS, OzDES, LAMOST, "
                   "APOGEE apVisit or JWST msaexp spectrum file, shard or shard directory")
    _add_model_arg(p)
    p.add_argument("--out", required=True, help="output directory (estimate outputs and reliability.csv)")
    p.add_argument("--resolution", type=float, default=None,
                   help="resolving power overriding the input's (per-survey defaults; else 450 near-IR, 3000 optical)")
    p.add_argument("--workers", type=positive_int, default=None, help="CPU worker threads of the estimate")
    p.add_argument("--overwrite", action="store_true", help="replace previous outputs in --out")
    add_progress_flag(p)
    p.set_defaults(func=cmd_run)


def _add_model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="run directory, exported model or shipped model name "
                   "(classical, 3class; default classical)")


def _scheme(args):
    from .labels import get_scheme

    return get_scheme(args.labels, args.tolerance, args.zwindow)


def cmd_train(args) -> int:
    import sys

    from ...cliargs import trainer_options
    from ...training import resolve_config
    from .dataset import open_training_data
    from .train import DEFAULT_CONFIG, train_reliability

    # Option errors before the (long) copy of the estimates into the run directory.
    scheme = _scheme(args)
    options = trainer_options(args)
    resolve_config(args.config or DEFAULT_CONFIG, args.set)
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    out = Path(args.out)
    shards = open_training_data(args.data, out / "data", progress=True)
    try:
        summary = train_reliability(shards, scheme, out, config=args.config or DEFAULT_CONFIG, overrides=args.set,
                                    channels=channels, pool=args.pool, resume=args.resume,
                                    overwrite=args.overwrite, baseline=not args.no_baseline, **options)
    except KeyboardInterrupt:
        print("astrolearn: training interrupted; continue it with the same command and --resume", file=sys.stderr)
        raise
    print(f"trained {out}: validation NLL {summary['val_nll_raw']:.4f} -> {summary['val_nll_calibrated']:.4f} "
          f"after calibration")
    return 0


def cmd_predict(args) -> int:
    from .classifier import ReliabilityModel
    from .dataset import open_estimates
    from .predict import write_reliability

    estimates = open_estimates(args.estimates)
    out = Path(args.out) if args.out else Path(args.estimates) / "reliability.csv"
    write_reliability(ReliabilityModel(args.model), estimates, out, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def cmd_evaluate(args) -> int:
    from .classifier import ReliabilityModel
    from .dataset import open_estimates
    from .report import evaluate_reliability
    from .train import load_baseline

    model = ReliabilityModel(args.model)
    baseline = load_baseline(args.baseline) if args.baseline else load_baseline(model.baseline_file, missing_ok=True)
    validation = open_estimates(args.validation) if args.validation else None
    summary = evaluate_reliability(model, open_estimates(args.data), args.out, baseline, by=args.by,
                                   overwrite=args.overwrite, validation=validation)
    for method, met in summary["seed_met"].items():
        print(f"{method}: seed operating point (purity > 0.8, completeness > 0.45) on these spectra "
              f"{'met' if met else 'not met'}")
    for goal in summary.get("goals", []):
        print(f"{goal['goal']}: {goal['measured']}: {'met' if goal['met'] else 'not shown'}")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def cmd_run(args) -> int:
    from .classifier import ReliabilityModel
    from .predict import estimate_and_classify

    # Load the model first: a bad --model fails before the (long) estimate.
    out = estimate_and_classify(args.spectra, ReliabilityModel(args.model), args.out, overwrite=args.overwrite,
                                resolution=args.resolution, workers=args.workers, progress=not args.no_progress)
    print(f"wrote {out}")
    return 0
