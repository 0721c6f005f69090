"""``astrolearn psf ...``: simulate, fit (classical), train, predict, evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    parser = sub.add_parser("psf", help="adaptive-optics PSF parameter estimation (PSFAO19)")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("simulate", help="simulate a training/test set of PSFs (HDF5 shards)")
    p.add_argument("--instrument", required=True, help="preset name (nirc2, irdis) or YAML file")
    p.add_argument("--wavelength", type=float, help="observing wavelength [um] (default: preset)")
    p.add_argument("--n", type=int, required=True, help="number of PSFs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory of shards")
    p.add_argument("--noise", choices=["default", "none"], help="detector noise (default: preset's photon+read noise)")
    p.add_argument("--noiseless-fraction", type=float, help="fraction of noiseless PSFs in a noisy set")
    p.add_argument("--static", choices=["default", "none"], default="default", help="static aberrations")
    p.add_argument("--config", help="YAML file overriding priors/noise settings (see psf/simulate.py)")
    p.add_argument("--shard-size", type=int, help="PSFs per shard (default 1000)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (one shard each)")
    p.add_argument("--overwrite", action="store_true", help="replace shards made with other settings")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = verbs.add_parser("fit", help="classical least-squares PSFAO fit of images")
    _add_input_args(p)
    p.add_argument("--static", choices=["default", "none"], default="default", help="fit static modes or not")
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--batch", type=int, default=8)
    p.set_defaults(func=cmd_fit)


def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="FITS image/cube (N,H,W) in ADU, or a simulated .h5 shard")
    p.add_argument("--instrument", required=True, help="preset name (nirc2, irdis) or YAML file")
    p.add_argument("--wavelength", type=float, help="observing wavelength [um] (default: preset)")
    p.add_argument("--static-basis", help="FITS cube (K,n,n) of static modes in nm over the pupil")
    p.add_argument("--gain", type=float, help="e-/ADU of FITS input (default: header GAIN, else preset)")
    p.add_argument("--weights", choices=["noise", "uniform"], default="noise", help="least-squares weighting")
    p.add_argument("--out", required=True, help="output CSV table")
    p.add_argument("--plot", help="PNG of data/model/residual (default: next to --out)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--no-progress", action="store_true")


def resolve_instrument(args):
    from .instruments import load_instrument

    inst = load_instrument(args.instrument, wavelength_um=getattr(args, "wavelength", None))
    basis = getattr(args, "static_basis", None)
    if basis:
        data = inst.to_dict()
        data["static"] = {"kind": "file", "path": str(Path(basis).resolve())}
        inst = type(inst).from_dict(data)
    return inst


def cmd_simulate(args) -> int:
    from .simulate import load_sim_config, simulate

    inst = resolve_instrument(args)
    overrides = load_sim_config(args.config) or {}
    if args.noise:
        overrides["noise"] = args.noise
    if args.noiseless_fraction is not None:
        overrides["noiseless_fraction"] = args.noiseless_fraction
    if args.static == "none":
        overrides["static"] = False
    if args.shard_size:
        overrides["shard_size"] = args.shard_size
    shards = simulate(inst, args.n, args.seed, Path(args.out), overrides, workers=args.workers,
                      overwrite=args.overwrite, progress=not args.no_progress)
    print(f"{args.n} PSFs in {len(shards)} shard(s) under {args.out}")
    return 0


def cmd_fit(args) -> int:
    import time

    from .. import __version__
    from ..io.shards import check_new_output
    from ..io.tables import write_csv, write_run_config
    from .data import load_psf_images
    from .fit import PsfFitter
    from .plots import plot_data_model_residual

    out = check_new_output(args.out, args.overwrite)
    plot = Path(args.plot) if args.plot else out.with_name(out.stem + "_fit.png")
    inst = resolve_instrument(args)
    data = load_psf_images(args.input, inst, gain=args.gain, weighting=args.weights)
    fitter = PsfFitter(inst, fit_static=args.static != "none", max_iter=args.max_iter, batch=args.batch)
    start = time.perf_counter()
    result = fitter.fit(data.images, data.weights, progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    columns = {"index": list(range(len(data.images)))}
    columns.update(result.table())
    write_csv(out, columns, overwrite=args.overwrite)
    write_run_config(out.with_name(out.stem + ".config.yaml"), {
        "command": "psf fit", "input": str(Path(args.input).resolve()), "instrument": fitter.instrument.to_dict(),
        "fit_static": fitter.fit_static, "weights": args.weights, "gain_e_per_adu": data.gain,
        "max_iter": args.max_iter, "start": "prior median", "seconds_per_psf": elapsed / len(data.images),
        "astrolearn_version": __version__,
    })
    plot_data_model_residual(plot, data.images, result.models)
    r0 = result.values[:, 0]
    print(f"fitted {len(r0)} PSF(s) in {elapsed:.1f} s; r0(500 nm) median {float(__import__('numpy').median(r0)):.3f} m")
    print(f"wrote {out} and {plot}")
    return 0
