"""``astrolearn psf ...``: simulate, fit (classical), train, predict, evaluate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cliargs import add_progress_flag, add_trainer_args, nonneg_int, positive_int


def register(sub) -> None:
    parser = sub.add_parser("psf", help="adaptive-optics PSF parameter estimation (PSFAO19)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("simulate", help="simulate a training/test set of PSFs (HDF5 shards)")
    p.add_argument("--instrument", required=True, help="preset name (nirc2, irdis) or YAML file")
    p.add_argument("--wavelength", type=float, help="observing wavelength [um] (default: preset)")
    p.add_argument("--n", type=positive_int, required=True, help="number of PSFs")
    p.add_argument("--seed", type=nonneg_int, default=0)
    p.add_argument("--out", required=True, help="output directory of shards")
    p.add_argument("--noise", choices=["default", "none"], help="detector noise (default: preset's photon+read noise)")
    p.add_argument("--noiseless-fraction", type=float, help="fraction of noiseless PSFs in a noisy set")
    p.add_argument("--static", choices=["default", "none"], default="default", help="static aberrations")
    p.add_argument("--static-free-fraction", type=float,
                   help="fraction of PSFs without static aberrations in a set with them (default 0)")
    p.add_argument("--static-basis", help="FITS cube (K,n,n) of static modes in nm over the pupil")
    _add_pupil_arg(p)
    p.add_argument("--config", help="YAML file overriding priors/noise settings (see psf/simulate.py)")
    p.add_argument("--shard-size", type=positive_int, help="PSFs per shard (default 1000)")
    p.add_argument("--workers", type=positive_int, default=1, help="parallel processes (one shard each)")
    p.add_argument("--overwrite", action="store_true", help="replace shards made with other settings")
    add_progress_flag(p)
    p.set_defaults(func=cmd_simulate)

    p = verbs.add_parser("fit", help="classical least-squares PSFAO fit of images")
    _add_input_args(p)
    p.add_argument("--static", choices=["default", "none"], default="default", help="fit static modes or not")
    p.add_argument("--max-iter", type=positive_int, default=100)
    p.add_argument("--batch", type=positive_int, default=8)
    p.set_defaults(func=cmd_fit)


    p = verbs.add_parser("train", help="train the CNN estimator on simulated shards, or on PSFs simulated as it "
                         "trains (--online)")
    p.add_argument("data", nargs="?", help="directory of training shards (astrolearn psf simulate); "
                   "not given with --online")
    p.add_argument("--online", action="store_true", help="draw each batch from the priors and render it on the "
                   "training device instead of reading shards (needs --instrument)")
    p.add_argument("--instrument", help="--online: preset name (nirc2, irdis) or YAML file")
    p.add_argument("--wavelength", type=float, help="--online: observing wavelength [um] (default: preset)")
    _add_pupil_arg(p, "--online: ")
    p.add_argument("--static", choices=["default", "none"], default="default", help="--online: static aberrations")
    p.add_argument("--noise", choices=["default", "none"], help="--online: detector noise (default: the preset's)")
    p.add_argument("--noiseless-fraction", type=float, help="--online: fraction of noiseless PSFs (default 0)")
    p.add_argument("--static-free-fraction", type=float,
                   help="--online: fraction of PSFs without static aberrations (default 0)")
    p.add_argument("--sim-config", help="--online: YAML file overriding priors/noise settings (as psf simulate "
                   "--config)")
    p.add_argument("--samples-per-epoch", type=positive_int, default=_ONLINE_DEFAULTS["samples_per_epoch"],
                   help="--online: training samples per epoch, all devices together (default 50000)")
    p.add_argument("--val-samples", type=positive_int, default=_ONLINE_DEFAULTS["val_samples"],
                   help="--online: size of the fixed simulated validation set (default 2000)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="--online: simulation seed (default 0)")
    p.add_argument("--config", default="psf_cnn", help="training YAML (default: the packaged psf_cnn)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, resolved config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set optimizer.lr=3e-4 (repeatable)")
    p.add_argument("--input", choices=["crop_bin", "full"], default="crop_bin",
                   help="network input: central crop + binned frame (2 x n/4 x n/4, default) or the full frame")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    add_trainer_args(p)
    p.set_defaults(func=cmd_train)

    p = verbs.add_parser("predict", help="estimate PSF parameters of images with a trained CNN")
    _add_input_args(p)
    p.add_argument("--model", help="run directory of a trained model, or a shipped model's name "
                   "(nirc2, nirc2-nostatic, irdis; default: the instrument's shipped model)")
    p.add_argument("--static", choices=["default", "none"], default="default",
                   help="none: the images have no static aberrations (the shipped model trained without them)")
    p.add_argument("--refine", action="store_true", help="hybrid: the classical fit, started from the CNN estimate "
                   "and regularised by it (a Gaussian prior of the CNN's uncertainty on r0, C, A, alpha, beta)")
    p.set_defaults(func=cmd_predict)

    p = verbs.add_parser("evaluate", help="compare the CNN with the classical fit (and hybrid) on a test set")
    p.add_argument("--model", required=True, help="run directory of a trained model, or a shipped model's name "
                   "(nirc2, nirc2-nostatic, irdis)")
    p.add_argument("--data", required=True, help="directory of test shards")
    p.add_argument("--compare", choices=["fit", "none"], default="fit")
    p.add_argument("--n-fit", type=positive_int, help="fit only the first N PSFs (on 2 CPU cores a fit takes "
                   "~0.3-1 s per PSF without static modes, ~3-6 s with them; the hybrid as much again)")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--overwrite", action="store_true")
    add_progress_flag(p)
    p.set_defaults(func=cmd_evaluate)


def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="FITS image/cube (N,H,W) in ADU, or a simulated .h5 shard")
    p.add_argument("--instrument", required=True, help="preset name (nirc2, irdis) or YAML file")
    p.add_argument("--wavelength", type=float, help="observing wavelength [um] (default: preset)")
    p.add_argument("--static-basis", help="FITS cube (K,n,n) of static modes in nm over the pupil")
    _add_pupil_arg(p)
    p.add_argument("--gain", type=float, help="e-/ADU of FITS input (default: header GAIN, else preset)")
    p.add_argument("--weights", choices=["noise", "uniform"], default="noise",
                   help="least-squares weighting (of the fit; for predict, of --refine and of the flux and "
                   "background of the model image)")
    p.add_argument("--out", required=True, help="output CSV table")
    p.add_argument("--plot", help="PNG of data/model/residual (default: next to --out, OUT_fit.png or, for "
                   "predict without --refine, OUT_model.png)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--force", action="store_true",
                   help="go on when the FITS header contradicts the instrument (telescope, camera, wavelength)")
    add_progress_flag(p)


def _add_pupil_arg(p: argparse.ArgumentParser, prefix: str = "") -> None:
    p.add_argument("--pupil", help=prefix + "FITS pupil mask spanning the diameter (area-resampled), or a shipped "
                   "mask's name (keck_largehex_272px.fits, sphere_alc2_lyot_stop_384px.fits); default: the preset's")


def resolve_instrument(args):
    """The instrument of ``--instrument``, with ``--wavelength``, ``--pupil`` and ``--static-basis`` applied.

    The files are read now, so that a bad one is reported before any output is made.
    """
    from .instruments import load_instrument
    from .pupils import mask_path

    inst = load_instrument(args.instrument, wavelength_um=getattr(args, "wavelength", None))
    data = inst.to_dict()
    pupil = getattr(args, "pupil", None)
    if pupil:
        # A shipped mask keeps its bare name (portable in stored descriptions); a user file its full path.
        path = pupil if mask_path(pupil) != Path(pupil) else str(Path(pupil).resolve())
        grid = {k: v for k, v in data["pupil"].items() if k in ("min_pixels", "scale")}
        data["pupil"] = {"kind": "file", "path": path, **grid}
    basis = getattr(args, "static_basis", None)
    if basis:
        data["static"] = {"kind": "file", "path": str(Path(basis).resolve())}
    if pupil or basis:
        inst = type(inst).from_dict(data)
        inst.static_basis  # builds the pupil too
    return inst


def _sim_overrides(args, config_file) -> dict:
    """Simulation settings given on the command line (psf simulate, psf train --online)."""
    from .simulate import load_sim_config

    overrides = load_sim_config(config_file) or {}
    if args.noise:
        overrides["noise"] = args.noise
    if args.noiseless_fraction is not None:
        overrides["noiseless_fraction"] = args.noiseless_fraction
    if args.static_free_fraction is not None:
        overrides["static_free_fraction"] = args.static_free_fraction
    if args.static == "none":
        overrides["static"] = False
    return overrides


def cmd_simulate(args) -> int:
    from ..errors import UserError
    from ..hpc.slurm import array_task
    from .simulate import simulate

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"{args.out}: exists and is not a directory (--out is a directory of shards)")
    inst = resolve_instrument(args)
    overrides = _sim_overrides(args, args.config)
    if args.shard_size:
        overrides["shard_size"] = args.shard_size
    task = array_task()
    shards = simulate(inst, args.n, args.seed, Path(args.out), overrides, workers=args.workers,
                      overwrite=args.overwrite, progress=not args.no_progress, task=task)
    share = "" if task is None else f"array task {task[0]} of {task[1]}: its share of "
    print(f"{share}{args.n} PSFs in {len(shards)} shard(s) under {args.out}")
    return 0


def cmd_fit(args) -> int:
    import time

    from .. import __version__
    from ..io.shards import check_new_output
    from ..io.tables import write_csv, write_run_config
    from .data import load_psf_images
    from .fit import PsfFitter
    from .metrics import column_units
    from .plots import plot_data_model_residual

    out = check_new_output(args.out, args.overwrite)
    plot = check_new_output(args.plot or out.with_name(out.stem + "_fit.png"), args.overwrite)
    inst = resolve_instrument(args)
    data = load_psf_images(args.input, inst, gain=args.gain, weighting=args.weights, force=args.force)
    fitter = PsfFitter(inst, fit_static=args.static != "none", max_iter=args.max_iter, batch=args.batch)
    start = time.perf_counter()
    result = fitter.fit(data.images, data.weights, progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    columns = {"index": list(range(len(data.images)))}
    columns.update(data.add_frame_columns(result.table(), inst.npix))
    write_csv(out, columns, overwrite=args.overwrite)
    write_run_config(out.with_name(out.stem + ".config.yaml"), {
        "command": "psf fit", "input": str(Path(args.input).resolve()), "instrument": fitter.instrument.to_dict(),
        "fit_static": fitter.fit_static, "weights": args.weights, "gain_e_per_adu": data.gain,
        "max_iter": args.max_iter, "start": "prior median", "seconds_per_psf": elapsed / len(data.images),
        "astrolearn_version": __version__, "units": column_units(columns),
    })
    plot_data_model_residual(plot, data.images, result.models, status=result.status)
    r0 = result.values[:, 0]
    print(f"fitted {len(r0)} PSF(s) in {elapsed:.1f} s; r0(500 nm) median {float(__import__('numpy').median(r0)):.3f} m")
    print(f"wrote {out} and {plot}")
    if result.warning():
        print(f"astrolearn: warning: {result.warning()} (status column of {out})", file=sys.stderr)
    return 0


#: Options of psf train --online and their defaults (given without --online, they are refused).
_ONLINE_DEFAULTS = {"instrument": None, "wavelength": None, "pupil": None, "static": "default", "noise": None,
                    "noiseless_fraction": None, "static_free_fraction": None, "sim_config": None,
                    "samples_per_epoch": 50_000, "val_samples": 2_000, "seed": 0}


def cmd_train(args) -> int:
    from ..cliargs import trainer_options
    from ..errors import UserError

    common = dict(resume=args.resume, overwrite=args.overwrite, overrides=args.set, layout=args.input,
                  **trainer_options(args))
    if args.online:
        if args.data is not None:
            raise UserError(f"--online simulates its data: no DATA directory ({args.data}) with it")
        if args.instrument is None:
            raise UserError("--online needs --instrument (the instrument to simulate)")
        from .online import train_psf_online

        trainer = train_psf_online(resolve_instrument(args), _sim_overrides(args, args.sim_config), args.seed,
                                   args.config, args.out, samples_per_epoch=args.samples_per_epoch,
                                   val_samples=args.val_samples, **common)
    else:
        if args.data is None:
            raise UserError("give the DATA directory of training shards, or --online with --instrument")
        online_only = [f"--{name.replace('_', '-')}" for name, default in _ONLINE_DEFAULTS.items()
                       if getattr(args, name) != default]
        if online_only:
            raise UserError(f"{', '.join(online_only)}: only with --online (a shard set has its own simulation)")
        from .learn import train_psf

        trainer = train_psf(args.data, args.config, args.out, **common)
    if trainer.global_rank == 0:  # under DDP every rank returns here
        print(f"best checkpoint: {trainer.checkpoint_callback.best_model_path}")
    return 0


def cmd_predict(args) -> int:
    import time

    import numpy as np

    from .. import __version__
    from ..errors import UserError
    from ..io.shards import check_new_output
    from ..io.tables import write_csv, write_run_config
    from .data import load_psf_images
    from .fit import PsfFitter
    from .learn import PsfEstimator, check_compatible, locate_model, packaged_model, read_metadata
    from .metrics import column_units
    from .plots import plot_data_model_residual

    out = check_new_output(args.out, args.overwrite)
    plot = check_new_output(args.plot or out.with_name(out.stem + ("_fit.png" if args.refine else "_model.png")),
                            args.overwrite)
    inst = resolve_instrument(args)
    model_dir = locate_model(args.model) if args.model else packaged_model(inst, static=args.static != "none")
    meta = read_metadata(model_dir)
    check_compatible(meta, inst, model_dir)
    trained_pupil = meta["instrument"].get("pupil") or {}
    if trained_pupil != inst.pupil:
        # Real frames come through the real pupil whatever a network was trained on: say it, not refuse.
        def name(pupil):
            return " ".join(str(pupil[k]) for k in ("kind", "path") if k in pupil)

        print(f"astrolearn: warning: {model_dir.name}: trained on the pupil '{name(trained_pupil)}', the "
              f"instrument has '{name(inst.pupil)}'; the CNN's estimates are the model's (only --refine fits "
              "with the given pupil)", file=sys.stderr)
    if args.static == "none" and meta["even_static_modes"]:
        raise UserError(f"{model_dir}: the model estimates static modes; --static none needs one trained "
                        "without them (psf simulate --static none)")
    data = load_psf_images(args.input, inst, gain=args.gain, weighting=args.weights, force=args.force)
    estimator = PsfEstimator(model_dir)
    start = time.perf_counter()
    table = estimator.predict(data.images)
    elapsed = time.perf_counter() - start
    fitter = PsfFitter(inst, fit_static=estimator.n_static > 0)
    status = None
    if args.refine:
        result = fitter.fit(data.images, data.weights, progress=not args.no_progress, initial=table, prior=table)
        table, models, status = result.table(), result.models, result.status
        elapsed = time.perf_counter() - start
    else:
        # Flux and background of the CNN's PSF, derived by linear least squares (no uncertainty).
        models, table["flux"], table["background"] = fitter.render(data.images, data.weights, table)
    columns = {"index": list(range(len(data.images)))}
    columns.update(data.add_frame_columns(table, inst.npix))
    write_csv(out, columns, overwrite=args.overwrite)
    write_run_config(out.with_name(out.stem + ".config.yaml"), {
        "command": "psf predict", "input": str(Path(args.input).resolve()), "model": str(model_dir.resolve()),
        "static": args.static, "refine": args.refine, "weights": args.weights, "instrument": inst.to_dict(),
        "gain_e_per_adu": data.gain, "seconds_per_psf": elapsed / len(data.images), "astrolearn_version": __version__,
        "units": column_units(columns),
    })
    plot_data_model_residual(plot, data.images, models, status=status)
    print(f"{len(data.images)} PSF(s) in {elapsed:.2f} s; r0(500 nm) median {float(np.median(table['r0'])):.3f} m; "
          f"wrote {out} and {plot}")
    if args.refine and result.warning():
        print(f"astrolearn: warning: {result.warning()} (status column of {out})", file=sys.stderr)
    return 0


def cmd_evaluate(args) -> int:
    from ..io.shards import check_new_output
    from .evaluate import evaluate

    out = Path(args.out)
    check_new_output(out / "report.md", args.overwrite)
    report = evaluate(args.model, args.data, out, compare_fit=args.compare == "fit", n_fit=args.n_fit,
                      progress=not args.no_progress)
    print(f"wrote {report}")
    return 0
