"""``astrolearn spectra simulate|train|predict|evaluate`` (heavy imports inside the handlers)."""

from __future__ import annotations

import argparse

from ..cliargs import add_progress_flag, add_trainer_args, nonneg_int, positive_int, trainer_options


def register(subparsers) -> None:
    """Add the ``spectra`` command and its subcommands."""
    p = subparsers.add_parser("spectra", help="star / galaxy / QSO classification of spectra",
                              description="Simulate galaxies, stars and quasars on a NISP or optical grid, train "
                              "and apply a 1D CNN classifier with calibrated probabilities.")
    sub = p.add_subparsers(dest="spectra_command", required=True, metavar="SUBCOMMAND")

    s = sub.add_parser("simulate", help="simulate galaxy, star and QSO spectra into HDF5 shards")
    s.add_argument("--n", type=positive_int, required=True, help="number of spectra")
    s.add_argument("--seed", type=nonneg_int, default=0, help="master seed (default 0)")
    s.add_argument("--out", required=True, help="output directory of shard-*.h5")
    s.add_argument("--grid", choices=("nisp", "optical"), default="nisp",
                   help="nisp (12060-18920 A, R 450, as redshift simulate) or optical (3600-9800 A, R 2000)")
    s.add_argument("--fractions", type=float, nargs=3, default=(1 / 3, 1 / 3, 1 / 3),
                   metavar=("GALAXY", "STAR", "QSO"), help="class probabilities (default equal)")
    s.add_argument("--mag-range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="AB magnitude range of stars and QSOs (default 16 22)")
    s.add_argument("--qso-zrange", type=float, nargs=2, default=None, metavar=("ZMIN", "ZMAX"),
                   help="QSO redshift range (default nisp 0.1 7, optical 0.1 5)")
    s.add_argument("--galaxy-zrange", type=float, nargs=2, default=None, metavar=("ZMIN", "ZMAX"),
                   help="galaxy redshift range (default nisp 0.5 2.5, optical 0.01 1.2)")
    s.add_argument("--noise", type=float, default=None, help="median per-pixel noise [erg/s/cm2/A]")
    s.add_argument("--rv-max", type=float, default=300.0, help="stellar radial velocities within +-RV [km/s]")
    s.add_argument("--truncate-fraction", type=float, default=0.2,
                   help="share of spectra missing 0-40%% of the window at one end (default 0.2)")
    s.add_argument("--shard-size", type=positive_int, default=1000, help="spectra per shard (default 1000)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_progress_flag(s)
    s.set_defaults(func=_simulate)

    t = sub.add_parser("train", help="train the CNN (and the random-forest baseline) on simulated shards")
    t.add_argument("data", help="directory of shards from 'astrolearn spectra simulate'")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--config", default=None, help="training configuration YAML (default: the package's)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a configuration value (repeatable)")
    t.add_argument("--no-baseline", action="store_true", help="skip the random forest")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    add_trainer_args(t)
    t.set_defaults(func=_train)

    r = sub.add_parser("predict", help="classify spectra into classes.csv",
                       description="Writes OUT/classes.csv in input order: targetid, class (GALAXY|STAR|QSO), "
                       "p_galaxy, p_star, p_qso (calibrated probabilities).")
    r.add_argument("input", help="text 'wave flux err', FITS batch, DESI coadd, SDSS/BOSS, 6dFGS, OzDES, LAMOST, "
                   "APOGEE apVisit or JWST msaexp spectrum file, shard or shard directory")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--model", default=None, help="shipped model name (nisp, optical) or model directory "
                   "(default: the shipped model whose wavelength range the input covers)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing classes.csv")
    r.set_defaults(func=_predict)

    v = sub.add_parser("evaluate", help="purity, completeness and confusion of a model on simulated shards")
    v.add_argument("data", help="directory of shards from 'astrolearn spectra simulate'")
    v.add_argument("--out", required=True, help="output directory")
    v.add_argument("--model", default=None, help="shipped model name or model directory (default nisp)")
    v.add_argument("--overwrite", action="store_true", help="replace existing evaluation files")
    v.set_defaults(func=_evaluate)


def _simulate(args: argparse.Namespace) -> int:
    from .simulate import SpectraConfig, simulate

    cfg = SpectraConfig(grid=args.grid, fractions=list(args.fractions),
                        mag_range=list(args.mag_range) if args.mag_range else None,
                        qso_zrange=list(args.qso_zrange) if args.qso_zrange else None,
                        galaxy_zrange=list(args.galaxy_zrange) if args.galaxy_zrange else None,
                        rv_max=args.rv_max, noise=args.noise, truncate_fraction=args.truncate_fraction,
                        shard_size=args.shard_size)
    paths = simulate(args.out, args.n, seed=args.seed, cfg=cfg, overwrite=args.overwrite,
                     progress=not args.no_progress)
    print(f"{args.out}: {args.n} spectra in {len(paths)} shard(s)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from ..io.shards import list_shards
    from .train import DEFAULT_CONFIG, train_classifier

    summary = train_classifier(list_shards(args.data), args.out, config=args.config or DEFAULT_CONFIG,
                               overrides=args.overrides, resume=args.resume, overwrite=args.overwrite,
                               baseline=not args.no_baseline, **trainer_options(args))
    rf = f", random forest {summary['rf_val_accuracy']:.3f}" if "rf_val_accuracy" in summary else ""
    print(f"{args.out}: validation accuracy {summary['val_accuracy']:.3f}{rf}; NLL {summary['val_nll_raw']:.3f} -> "
          f"{summary['val_nll_calibrated']:.3f} calibrated")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .predict import predict

    info = predict(args.input, args.out, model=args.model, overwrite=args.overwrite)
    counts = ", ".join(f"{k} {v}" for k, v in info["counts"].items())
    print(f"{info['path']}: {info['n']} spectra ({counts}) with {info['model']}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    info = evaluate(args.data, args.out, model=args.model, overwrite=args.overwrite)
    print(f"accuracy {info['accuracy']:.4f} on {info['n']} spectra; wrote {', '.join(str(p) for p in info['files'])}")
    return 0
