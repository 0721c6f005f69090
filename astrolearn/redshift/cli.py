"""``astrolearn redshift simulate|estimate|evaluate`` and the reliability verbs (heavy imports inside the handlers)."""

from __future__ import annotations

import argparse

from ..cliargs import add_progress_flag, nonneg_int, positive_int


def register(subparsers) -> None:
    """Add the ``redshift`` command and its subcommands."""
    p = subparsers.add_parser("redshift", help="Euclid-like spectra: simulate, estimate redshifts, evaluate",
                              description="NISP spectrum simulator and template-fitting redshift engine "
                              "writing the log redshift PDF.")
    sub = p.add_subparsers(dest="redshift_command", required=True, metavar="SUBCOMMAND")

    s = sub.add_parser("simulate", help="simulate NISP red-grism spectra into HDF5 shards")
    s.add_argument("--n", type=positive_int, required=True, help="number of spectra")
    s.add_argument("--seed", type=nonneg_int, default=0, help="master seed (default 0)")
    s.add_argument("--out", required=True, help="output directory of shard-*.h5")
    s.add_argument("--shard-size", type=positive_int, default=1000, help="spectra per shard (default 1000)")
    s.add_argument("--resolution", type=float, default=450.0, help="resolving power lambda/FWHM (default 450)")
    s.add_argument("--zrange", type=float, nargs=2, default=(0.5, 2.5), metavar=("ZMIN", "ZMAX"),
                   help="uniform redshift range (default 0.5 2.5)")
    s.add_argument("--flux-range", type=float, nargs=2, default=(5e-17, 1e-15), metavar=("FMIN", "FMAX"),
                   help="log-uniform Halpha flux range [erg/s/cm2] (default 5e-17 1e-15)")
    s.add_argument("--no-line-fraction", type=float, default=0.1, help="fraction without lines (default 0.1)")
    s.add_argument("--noise", type=float, default=2.6e-18, help="median per-pixel noise [erg/s/cm2/A]")
    s.add_argument("--templates", default="package", metavar="FAMILY_OR_FILE",
                   help="continuum templates of the simulated galaxies: 'package' (default, the shipped kcorrect set), "
                   "a template FITS file, a text template 'wavelength[A] flux' or a directory of them; "
                   "estimate keeps its own templates")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_progress_flag(s)
    s.set_defaults(func=_simulate)

    e = sub.add_parser("estimate", help="template-fitting redshifts with log PDFs",
                       description="chi2(z) of continuum templates + emission-line groups (non-negative), "
                       "log PDF on a grid, candidates (Amazed conventions). In redshifts.csv, z_proba is the PDF mass "
                       "within z +- 3 Dz of the best redshift and z_proba_cal its calibration: the probability "
                       "that |z - z_true| < 0.003 (1 + z_true), fitted on simulated NISP spectra.")
    e.add_argument("input", help="text 'wave flux err', FITS batch, DESI coadd, SDSS/BOSS, 6dFGS, OzDES, LAMOST, "
                   "APOGEE apVisit or JWST msaexp spectrum file, shard or shard directory")
    e.add_argument("--out", required=True, help="output directory")
    e.add_argument("--zrange", type=float, nargs=2, default=(0.01, 3.0), metavar=("ZMIN", "ZMAX"),
                   help="redshift range (default 0.01 3.0, Euclid's; Lyman alpha of z > 3 sources in optical "
                        "spectra needs a wider one, e.g. 0 4)")
    e.add_argument("--zstep", type=float, default=1e-4, help="grid step (default 1e-4)")
    e.add_argument("--sampling", choices=("log", "lin"), default="log",
                   help="grid regular in ln(1+z) (log, default) or in z (lin)")
    e.add_argument("--resolution", type=float, default=None,
                   help="resolving power overriding the input's (per-survey defaults; else 450 near-IR, 3000 optical)")
    e.add_argument("--templates", nargs="+", default=None, help="continuum templates to use (default all)")
    e.add_argument("--template-file", default=None, help="FITS file of continuum templates")
    e.add_argument("--no-lines", action="store_true", help="continuum templates only")
    e.add_argument("--vdisp", type=float, default=100.0, help="line velocity dispersion [km/s] (default 100)")
    e.add_argument("--prior", default=None, help="redshift prior: two-column text file 'z density'")
    e.add_argument("--candidates", type=positive_int, default=5, help="candidates per spectrum (default 5)")
    e.add_argument("--peak-separation", type=float, default=0.01,
                   help="minimum candidate separation in ln(1+z) (default 0.01)")
    e.add_argument("--stride", default="auto",
                   help="coarse-pass stride: auto (default) or an integer; 1 = exact chi2 on every grid point")
    e.add_argument("--chunk-size", type=positive_int, default=1000, help="spectra per output file (default 1000)")
    e.add_argument("--save-chi2", action="store_true",
                   help="also store chi2(z) and the mask of exactly computed grid points")
    e.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="normal-equation precision")
    e.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    e.add_argument("--workers", type=positive_int, default=None, help="CPU worker threads (default: available CPUs)")
    e.add_argument("--overwrite", action="store_true", help="replace existing results in --out")
    add_progress_flag(e)
    e.set_defaults(func=_estimate)

    v = sub.add_parser("evaluate", help="success rates and failure aliases of estimates of simulated spectra")
    v.add_argument("estimates", help="output directory of 'astrolearn redshift estimate'")
    v.add_argument("--out", default=None, help="destination (default ESTIMATES/evaluation)")
    v.add_argument("--tol", type=float, default=0.003, help="success threshold on |dz|/(1+z) (default 0.003)")
    v.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    v.add_argument("--overwrite", action="store_true", help="replace existing evaluation files")
    v.set_defaults(func=_evaluate)

    from .reliability.cli import register_verbs

    register_verbs(sub)


def _simulate(args: argparse.Namespace) -> int:
    from ..hpc.slurm import array_task
    from .simulate import NispConfig, simulate

    cfg = NispConfig(resolution=args.resolution, zmin=args.zrange[0], zmax=args.zrange[1],
                     flux_min=args.flux_range[0], flux_max=args.flux_range[1],
                     no_line_fraction=args.no_line_fraction, noise=args.noise, shard_size=args.shard_size,
                     templates=args.templates)
    task = array_task()
    paths = simulate(args.out, args.n, seed=args.seed, cfg=cfg, overwrite=args.overwrite, progress=not args.no_progress,
                     task=task)
    share = "" if task is None else f" (array task {task[0]} of {task[1]}: its share)"
    print(f"{args.out}: {args.n} spectra in {len(paths)} shard(s){share}")
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from .engine import EngineConfig
    from .estimate import estimate
    from .pdf import ZGrid, log_prior, read_prior

    grid = ZGrid(args.zrange[0], args.zrange[1], args.zstep, args.sampling)
    stride = args.stride
    if stride != "auto":
        try:
            stride = positive_int(stride)
        except argparse.ArgumentTypeError:
            raise UserError(f"--stride must be 'auto' or a positive integer, not {stride!r}") from None
    cfg = EngineConfig(grid=grid, templates=args.templates, template_file=args.template_file,
                       lines=not args.no_lines, vdisp=args.vdisp, n_candidates=args.candidates,
                       peak_separation=args.peak_separation, stride=stride, dtype=args.dtype,
                       device=args.device, workers=args.workers)
    lp = None
    if args.prior:
        lp = log_prior(grid, read_prior(args.prior))
    info = estimate(args.input, args.out, cfg, resolution=args.resolution, log_prior=lp,
                    prior_desc=str(args.prior) if args.prior else None, chunk_size=args.chunk_size,
                    overwrite=args.overwrite, progress=not args.no_progress, save_chi2=args.save_chi2)
    print(f"{info['summary']}: {info['n']} spectra estimated in {info['seconds']:.1f} s "
          f"({info['spectra_per_s']:.1f} spectra/s)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    ev = evaluate(args.estimates, args.out, tol=args.tol, overwrite=args.overwrite, plots=not args.no_plots)
    overall = ev["rows"][0]
    print(f"success rate {overall['rate']:.3f} ({overall['success']}/{overall['n']}); "
          f"wrote {', '.join(str(p) for p in ev['files'])}")
    return 0
