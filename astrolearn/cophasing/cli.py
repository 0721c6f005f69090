"""``astrolearn cophase ...``: petal cophasing (AZIMOV): simulate, train, predict, fit, evaluate, loop."""

from __future__ import annotations

from pathlib import Path

from ..cliargs import add_progress_flag, add_trainer_args, nonneg_int, positive_int


def register(sub) -> None:
    parser = sub.add_parser("cophase", help="petal cophasing of a deployable telescope (12 petal modes)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("simulate", help="simulate in-focus/defocused images of random petal errors (HDF5 shards)")
    p.add_argument("--n", type=positive_int, required=True, help="number of measurements")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--out", required=True, help="output directory of shards")
    _add_sim_args(p)
    p.add_argument("--shard-size", type=positive_int, help="measurements per shard (default 1000)")
    p.add_argument("--overwrite", action="store_true", help="replace shards made with other settings")
    add_progress_flag(p)
    p.set_defaults(func=cmd_simulate)

    p = verbs.add_parser("train", help="train the CNN estimator of the 12 modes on simulated shards")
    p.add_argument("data", help="directory of training shards (astrolearn cophase simulate)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, resolved config)")
    p.add_argument("--config", help="training YAML (default: astrolearn/cophasing/cophase_cnn.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set optimizer.lr=3e-4 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    add_trainer_args(p)
    p.set_defaults(func=cmd_train)

    for verb, text in (("predict", "estimate the 12 modes of images with the CNN"),
                       ("fit", "estimate the 12 modes by a classical baseline: phase-diversity least squares "
                        "or Gerchberg-Saxton")):
        p = verbs.add_parser(verb, help=text)
        p.add_argument("input", help="FITS cube (C,H,W) or (N,C,H,W) [e-, background subtracted; channel 0 in "
                       "focus, 1 defocused], or a simulated .h5 shard")
        p.add_argument("--model", help="run directory or shipped model name (default: the shipped azimov); for fit, "
                       "whose optics and noise to use")
        p.add_argument("--out", required=True, help="output CSV (12 modes and their _err, nm)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing output")
        if verb == "fit":
            p.add_argument("--estimator", choices=["lsq", "gs"], default="lsq",
                           help="phase-diversity least squares (lsq) or Gerchberg-Saxton (gs) (default lsq)")
            _add_lsq_args(p)
            _add_gs_args(p)
            add_progress_flag(p)
        p.set_defaults(func=cmd_predict if verb == "predict" else cmd_fit)

    p = verbs.add_parser("evaluate", help="errors of the CNN (and of least squares) on a simulated test set")
    p.add_argument("--model", help="run directory or shipped model name (default: the shipped azimov)")
    p.add_argument("--data", required=True, help="directory of test shards")
    p.add_argument("--compare", choices=["lsq", "none"], default="lsq")
    p.add_argument("--n-fit", type=positive_int, default=50,
                   help="least squares on the first N measurements only (about a second each on a CPU core)")
    _add_lsq_args(p)
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--overwrite", action="store_true")
    add_progress_flag(p)
    p.set_defaults(func=cmd_evaluate)

    p = verbs.add_parser("loop", help="closed loop measure -> correct -> measure from random petal errors")
    p.add_argument("--n", type=positive_int, required=True, help="number of cases")
    p.add_argument("--iterations", type=positive_int, default=2, help="corrections per case")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--out", required=True, help="output directory (loop.csv, loop.png, config.yaml)")
    p.add_argument("--estimator", choices=["cnn", "lsq", "gs"], default="cnn",
                   help="cnn, phase-diversity least squares (lsq) or Gerchberg-Saxton (gs) (default cnn)")
    p.add_argument("--model", help="CNN: run directory or shipped model name (default: the shipped azimov); its "
                   "optics are the loop's for every estimator")
    p.add_argument("--photons", type=float, help="photo-electrons per image (default: 1e5)")
    p.add_argument("--piston", type=float, default=300.0, help="initial pistons ~ U(-P, P) nm (default 300)")
    p.add_argument("--tiptilt", type=float, default=150.0, help="initial tip/tilt ~ U(-T, T) nm RMS (default 150)")
    _add_lsq_args(p)
    _add_gs_args(p)
    p.add_argument("--overwrite", action="store_true")
    add_progress_flag(p)
    p.set_defaults(func=cmd_loop)


def _add_sim_args(p) -> None:
    p.add_argument("--config", help="YAML of optics/priors/noise settings (see astrolearn/cophasing/simulate.py)")
    p.add_argument("--wavelengths", help="comma-separated wavelengths [nm] summed (broadband); default 650")
    p.add_argument("--diversity", type=float, help="defocus of the second image [nm RMS]; 0: in-focus image only "
                   "(default 200)")
    p.add_argument("--photons", help="photo-electrons per image: a value or LOW,HIGH log-uniform (default 1e4,1e6)")


def _add_lsq_args(p) -> None:
    p.add_argument("--starts", type=positive_int, default=8, help="least squares: starting points per image "
                   "(the first at zero, the others drawn from the priors)")
    p.add_argument("--max-iter", type=positive_int, default=60, help="least squares: L-BFGS iterations per start")


def _add_gs_args(p) -> None:
    p.add_argument("--gs-iterations", type=positive_int, default=200, help="Gerchberg-Saxton: most iterations per "
                   "image (it stops earlier once the estimate moves by < 0.001 nm; default 200)")


def _numbers(text, option) -> list[float]:
    from ..errors import UserError

    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def sim_overrides(args) -> dict:
    """The simulation settings of ``--config``, ``--wavelengths``, ``--diversity``, ``--photons``."""
    from .simulate import load_sim_config

    config = dict(load_sim_config(args.config) or {})
    optics = dict(config.get("optics") or {})
    if args.wavelengths:
        optics["wavelengths_nm"] = _numbers(args.wavelengths, "--wavelengths")
    if args.diversity is not None:
        optics["diversity_nm"] = args.diversity
    config["optics"] = optics
    if args.photons:
        photons = _numbers(args.photons, "--photons")
        config["noise"] = dict(config.get("noise") or {}, photons=photons[0] if len(photons) == 1 else photons)
    return config


def cmd_simulate(args) -> int:
    from .simulate import simulate

    config = sim_overrides(args)
    if args.shard_size:
        config["shard_size"] = args.shard_size
    shards = simulate(args.n, args.seed, args.out, config, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"{args.n} measurements in {len(shards)} shard(s) under {args.out}")
    return 0


def cmd_train(args) -> int:
    from ..cliargs import trainer_options
    from .learn import train_cophase

    trainer = train_cophase(args.data, args.out, args.config, resume=args.resume, overwrite=args.overwrite,
                            overrides=args.set, **trainer_options(args))
    print(f"best checkpoint: {trainer.checkpoint_callback.best_model_path}")
    return 0


def _outputs(args) -> list[Path]:
    """The CSV and its ``.config.yaml``, refused if they exist (before any work)."""
    from ..io.shards import check_new_output

    out = check_new_output(args.out, args.overwrite)
    return [out, check_new_output(out.with_name(out.stem + ".config.yaml"), args.overwrite)]


def _write_table(args, modes, std, extra: dict, names, config: dict) -> None:
    from .. import __version__
    from ..io.tables import write_csv, write_run_config

    out, cfg = _outputs(args)
    columns = {"index": list(range(len(modes)))}
    for j, name in enumerate(names):
        columns[name] = modes[:, j]
        columns[f"{name}_err"] = std[:, j]
    columns.update(extra)
    write_csv(out, columns, overwrite=args.overwrite)
    write_run_config(cfg, {**config, "input": str(Path(args.input).resolve()), "units": "nm (modes, common piston "
                           "removed)", "astrolearn_version": __version__})


def cmd_predict(args) -> int:
    import time

    import numpy as np

    from .data import load_images
    from .learn import CophaseEstimator

    estimator = CophaseEstimator(args.model)
    _outputs(args)
    images = load_images(args.input, estimator.optics)
    estimator.check(images, args.input)
    start = time.perf_counter()
    modes, std = estimator.estimate(images)
    elapsed = time.perf_counter() - start
    wfe = estimator.optics.wfe_nm(modes)
    _write_table(args, modes, std, {"wfe_nm": wfe}, estimator.optics.names,
                 {"command": "cophase predict", "model": str(estimator.dir.resolve()),
                  "optics": estimator.optics.to_dict(), "seconds_per_image": elapsed / len(images)})
    print(f"{len(images)} measurement(s) in {elapsed:.3f} s; estimated WFE median {float(np.median(wfe)):.1f} nm RMS; "
          f"wrote {args.out}")
    return 0


def cmd_fit(args) -> int:
    import time

    from .data import load_images
    from .fit import LsqFitter
    from .learn import CophaseEstimator, locate_model

    meta = CophaseEstimator.read_meta(locate_model(args.model))
    fitter = LsqFitter.from_meta(meta, starts=args.starts, max_iter=args.max_iter)
    _outputs(args)
    images = load_images(args.input, fitter.optics)
    fitter.check(images, args.input)
    start = time.perf_counter()
    if args.estimator == "gs":
        from .gs import GsEstimator

        modes = GsEstimator(fitter.optics, iterations=args.gs_iterations).estimate(images)
        # GS gives no uncertainty: the errors are the Cramer-Rao bound at its estimate, as for least squares.
        std, extra, settings = fitter.uncertainty(images, modes), {}, {"gs_iterations": args.gs_iterations}
    else:
        result = fitter.fit(images, progress=not args.no_progress)
        modes, std, extra = result.modes, result.std, {"chi2_per_pixel": result.chi2}
        settings = {"starts": args.starts, "max_iter": args.max_iter}
    elapsed = time.perf_counter() - start
    _write_table(args, modes, std, {"wfe_nm": fitter.optics.wfe_nm(modes), **extra}, fitter.optics.names,
                 {"command": "cophase fit", "estimator": args.estimator, "optics": fitter.optics.to_dict(),
                  **settings, "seconds_per_image": elapsed / len(images)})
    print(f"fitted {len(images)} measurement(s) ({args.estimator}) in {elapsed:.1f} s; wrote {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    from ..io.shards import check_new_output
    from .evaluate import evaluate

    out = Path(args.out)
    check_new_output(out / "report.md", args.overwrite)
    report = evaluate(args.model, args.data, out, compare=args.compare == "lsq", n_fit=args.n_fit,
                      progress=not args.no_progress, lsq_options={"starts": args.starts, "max_iter": args.max_iter})
    print(f"wrote {report}")
    return 0


def cmd_loop(args) -> int:
    from .loop import run_loop_command

    run_loop_command(args)
    return 0
