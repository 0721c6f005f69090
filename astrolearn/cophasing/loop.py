"""Closed-loop cophasing: measure -> correct -> measure, from random petal errors.

Each case starts from modes drawn uniformly (pistons in +-``piston_nm``, tip/tilt in
+-``tiptilt_nm`` RMS); each iteration renders its noisy in-focus and defocused images, estimates
the modes and subtracts the estimate (a perfect actuator: the correction is what the estimator
says). The wavefront error (RMS over the pupil, common piston removed) and the Strehl ratio at
the optics' middle wavelength are recorded before any correction (iteration 0) and after each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import UserError
from .optics import Optics
from .simulate import render

DEFAULT_PHOTONS = 1e5


def initial_modes(n: int, piston_nm: float, tiptilt_nm: float, rng, n_petals: int = 4) -> np.ndarray:
    """(n, 3 n_petals) starting errors [nm], uniform in +-piston_nm and +-tiptilt_nm."""
    half = np.r_[np.full(n_petals, piston_nm), np.full(2 * n_petals, tiptilt_nm)]
    return rng.uniform(-1, 1, (n, 3 * n_petals)) * half


def run_loop(optics: Optics, estimate: Callable[[np.ndarray], np.ndarray], modes: np.ndarray, iterations: int,
             photons: float, noise: dict, rng) -> dict:
    """Run the loop on the cases ``modes`` (N, n_modes) [nm].

    Returns
    -------
    dict
        ``case``, ``iteration``, ``wfe_nm``, ``strehl`` (N (iterations + 1) rows, case-major),
        ``residual`` (iterations + 1, N, n_modes) [nm] and ``seconds_per_estimate``.
    """
    modes = np.array(modes, dtype=np.float64)
    history, seconds = [modes.copy()], 0.0
    for _ in range(iterations):
        images = render(optics, modes, photons, noise, rng)
        start = time.perf_counter()
        modes = modes - estimate(images)
        seconds += time.perf_counter() - start
        history.append(modes.copy())
    n, k = len(modes), iterations + 1
    residual = np.stack(history)
    wfe = np.stack([optics.wfe_nm(r) for r in residual], 1)  # (N, k)
    strehl = np.stack([optics.strehl(r) for r in residual], 1)
    return {"case": np.repeat(np.arange(n), k), "iteration": np.tile(np.arange(k), n), "wfe_nm": wfe.ravel(),
            "strehl": strehl.ravel(), "residual": residual,
            "seconds_per_estimate": seconds / max(1, n * iterations)}


def plot_loop(path, table: dict, title: str) -> None:
    """PNG of the WFE and Strehl ratio per iteration: every case (thin lines) and the median."""
    from ..plotting import pyplot

    plt = pyplot()

    k = int(table["iteration"].max()) + 1
    wfe = table["wfe_nm"].reshape(-1, k)
    strehl = table["strehl"].reshape(-1, k)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    it = np.arange(k)
    for ax, values, label in ((axes[0], wfe, "WFE [nm RMS]"), (axes[1], strehl, "Strehl ratio")):
        for row in values[:200]:
            ax.plot(it, row, color="0.7", lw=0.5)
        ax.plot(it, np.median(values, 0), "o-", color="C0", lw=2, label="median")
        ax.set_xlabel("iteration (0: before correction)")
        ax.set_ylabel(label)
        ax.set_xticks(it)
    axes[0].set_yscale("log")
    axes[0].axhline(15, color="C3", ls="--", label="15 nm goal")
    axes[1].axhline(0.95, color="C2", ls=":", label="0.95")
    axes[1].axhline(0.99, color="C3", ls="--", label="0.99")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def make_estimator(kind: str, model=None, starts: int = 8, max_iter: int = 60, gs_iterations: int = 200):
    """``(optics, noise settings, estimate)`` of the CNN, least squares (``lsq``) or Gerchberg-Saxton (``gs``).

    The classical estimators use the optics of the model (default: the shipped CNN's).
    """
    from .learn import CophaseEstimator, locate_model

    if kind == "cnn":
        cnn = CophaseEstimator(model)
        return cnn.optics, cnn.meta.get("noise") or {}, lambda images: cnn.estimate(images)[0]
    meta = CophaseEstimator.read_meta(locate_model(model))
    if kind == "gs":
        from .gs import GsEstimator

        gs = GsEstimator.from_meta(meta, iterations=gs_iterations)
        return gs.optics, meta.get("noise") or {}, gs.estimate
    from .fit import LsqFitter

    fitter = LsqFitter.from_meta(meta, starts=starts, max_iter=max_iter)
    return fitter.optics, meta.get("noise") or {}, lambda images: fitter.fit(images, with_std=False).modes


def run_loop_command(args) -> None:
    """``astrolearn cophase loop``: DIR/loop.csv, DIR/loop.png, DIR/config.yaml."""
    from .. import __version__
    from ..io.shards import check_new_output
    from ..io.tables import write_csv, write_run_config

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory (--out is the loop's output directory)")
    paths = [check_new_output(out / name, args.overwrite) for name in ("loop.csv", "loop.png", "config.yaml")]
    photons = DEFAULT_PHOTONS if args.photons is None else args.photons
    if photons <= 0 or args.piston < 0 or args.tiptilt < 0:
        raise UserError("--photons must be > 0, --piston and --tiptilt >= 0")
    optics, trained_noise, estimate = make_estimator(args.estimator, args.model, args.starts, args.max_iter,
                                                     args.gs_iterations)
    noise = {"read_noise_e": trained_noise.get("read_noise_e", 1.0),
             "background_e": trained_noise.get("background_e", 0.0)}
    rng = np.random.default_rng(args.seed)
    start = initial_modes(args.n, args.piston, args.tiptilt, rng, optics.n_petals)
    result = run_loop(optics, estimate, start, args.iterations, photons, noise, rng)
    out.mkdir(parents=True, exist_ok=True)
    table = {key: result[key] for key in ("case", "iteration", "wfe_nm", "strehl")}
    write_csv(paths[0], table, overwrite=args.overwrite)
    plot_loop(paths[1], table, f"{args.estimator}, {args.n} cases, {photons:.3g} e- per image, "
              f"{'+'.join(f'{w:g}' for w in optics.wavelengths_nm)} nm")
    write_run_config(paths[2], {
        "command": "cophase loop", "n": args.n, "iterations": args.iterations, "seed": args.seed,
        "estimator": args.estimator, "model": args.model or "azimov (shipped)", "photons_per_image": photons,
        "initial": {"piston_nm": args.piston, "tiptilt_nm": args.tiptilt}, "noise": noise,
        "optics": optics.to_dict(), "strehl_wavelength_nm": optics.reference_wavelength,
        "seconds_per_estimate": result["seconds_per_estimate"], "astrolearn_version": __version__,
        **({"starts": args.starts, "max_iter": args.max_iter} if args.estimator == "lsq" else {}),
        **({"gs_iterations": args.gs_iterations} if args.estimator == "gs" else {}),
    })
    k = args.iterations + 1
    wfe = result["wfe_nm"].reshape(-1, k)
    strehl = result["strehl"].reshape(-1, k)
    steps = ", ".join(f"{i}: {np.median(wfe[:, i]):.1f} nm / {np.median(strehl[:, i]):.3f}" for i in range(k))
    print(f"median WFE / Strehl per iteration: {steps}")
    print(f"wrote {paths[0]} and {paths[1]}")
