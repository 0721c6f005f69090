"""The PSF estimator: a CNN regressing PSFAO19 parameters and static modes from an image.

Targets (what the network learns, all of order one once normalised by the engine):

================  =============================================================================
target            meaning
================  =============================================================================
log_r0            ln r0 [m, at 500 nm]
log_bck, log_amp  ln C [rad² m²], ln A [rad²] (image wavelength)
log_alpha         ln alpha [1/m]
beta              Moffat power law
ell_cos, ell_sin  ln(ratio) x (cos 2 theta, sin 2 theta): the Moffat ellipse, invariant under the
                  exact degeneracy (ratio, theta) = (1/ratio, theta + pi/2)
stat_i            static modes [nm]; a single in-focus image cannot tell the even modes' common
                  sign, so their loss takes the better of the two signs (``loss.sign_free``) and
                  predictions report the sign with the first even mode >= 0
dx, dy            sub-pixel offset of the PSF centre [pixels]
================  =============================================================================

Inputs: each frame divided by its total flux and stretched by ``asinh(x / 1e-4)``, so that the
read-noise floor, the halo and the core all span a few units; frames are centred on their
brightest pixel (as :func:`astrolearn.psf.data.crop_around_peak` does for user images). Two input
layouts (``psf train --input``, stored in the model's metadata):

- ``crop_bin`` (default): 2 channels of n/4 x n/4 pixels: the central n/4 x n/4 pixels at full
  resolution (the diffraction core, 3.3 px across on NIRC2, and the static aberrations' speckles)
  and the whole frame binned 4 x 4 (the seeing and AO halos that carry r0, A, alpha, beta). The
  network then starts at full resolution where it matters, for the cost of a 32 x 32 input.
- ``full``: the whole n x n frame, 1 channel (the first shipped models).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import UserError
from .instruments import Instrument

METADATA_FILE = "psf_model.json"
STRETCH = 1e-4  # asinh softening, in units of the frame's total flux
PACKAGED = Path(__file__).parent / "models"


LAYOUTS = ("crop_bin", "full")
BIN = 4  # crop_bin: binning factor of the whole frame, and ratio of the frame to the central crop


class PsfTransform:
    """Frames (..., H, W) [any flux unit] -> network input (..., C, h, w) float32 (picklable for workers).

    Parameters
    ----------
    stretch : float
        asinh softening, in units of the frame's total flux.
    layout : {"crop_bin", "full"}
        ``crop_bin``: (2, H/4, W/4), the central H/4 x W/4 pixels and the frame binned 4 x 4 (mean);
        ``full``: (1, H, W).
    """

    def __init__(self, stretch: float = STRETCH, layout: str = "crop_bin"):
        if layout not in LAYOUTS:
            raise UserError(f"unknown PSF input layout {layout!r} (known: {', '.join(LAYOUTS)})")
        self.stretch = stretch
        self.layout = layout

    def __call__(self, image) -> np.ndarray:
        import torch  # its asinh is vectorised and threaded: 1.5x numpy's on a batch

        return self.tensor(torch.from_numpy(np.nan_to_num(np.asarray(image, dtype=np.float32)))).numpy()

    def tensor(self, x):
        """The same for a float32 tensor of frames, on its device (online training renders there)."""
        import torch

        flux = x.sum(dim=(-2, -1), keepdim=True, dtype=torch.float64).clamp(min=1e-30)
        scale = (1.0 / (flux * self.stretch)).float().unsqueeze(-3)
        if self.layout == "full":
            return torch.asinh(x.unsqueeze(-3) * scale)
        h, w = x.shape[-2:]
        if h % BIN or w % BIN or (h // BIN) % 2 or (w // BIN) % 2:
            raise UserError(f"frames of {h}x{w} pixels: the crop_bin input needs sides multiple of {2 * BIN}")
        ch, cw = h // BIN, w // BIN
        crop = x[..., h // 2 - ch // 2 : h // 2 + ch // 2, w // 2 - cw // 2 : w // 2 + cw // 2]
        binned = x.reshape(*x.shape[:-2], ch, BIN, cw, BIN).mean(dim=(-3, -1))
        return torch.asinh(torch.stack([crop, binned], dim=-3) * scale)


def target_names(n_static: int) -> list[str]:
    return (["log_r0", "log_bck", "log_amp", "log_alpha", "beta", "ell_cos", "ell_sin"]
            + [f"stat_{i + 1}" for i in range(n_static)] + ["dx", "dy"])


class PsfTargets:
    """Target function for :class:`~astrolearn.training.ShardDataset` (picklable)."""

    def __init__(self, n_static: int):
        self.n_static = n_static

    def __call__(self, params: np.ndarray, names: list[str]) -> np.ndarray:
        col = lambda n: params[:, names.index(n)]  # noqa: E731
        ell = np.log(col("ratio"))
        stat = np.stack([col(f"stat_{i + 1}") for i in range(self.n_static)], axis=1) if self.n_static else \
            np.zeros((len(params), 0))
        return np.column_stack([np.log(col("r0")), np.log(col("bck")), np.log(col("amp")), np.log(col("alpha")),
                                col("beta"), ell * np.cos(2 * col("theta")), ell * np.sin(2 * col("theta")),
                                stat, col("dx"), col("dy")])


def canonical_sign(stat: np.ndarray, even: np.ndarray) -> np.ndarray:
    """Flip the even static modes together so that the first even mode is >= 0."""
    if not even.any():
        return stat
    sign = np.where(stat[:, np.flatnonzero(even)[0]] < 0, -1.0, 1.0)
    out = stat.copy()
    out[:, even] *= sign[:, None]
    return out


def decode(mean: np.ndarray, std: np.ndarray | None, even: list[bool]) -> dict[str, np.ndarray]:
    """Network outputs (targets) -> the columns of ``psf fit`` (values and ``_err``) except flux etc.

    ``even`` flags the even static modes, reported with the sign that makes the first one >= 0.
    """
    std = np.zeros_like(mean) if std is None else std
    n_static = len(even)
    names = target_names(n_static)
    mean = mean.copy()
    mean[:, 7:7 + n_static] = canonical_sign(mean[:, 7:7 + n_static], np.asarray(even, dtype=bool))
    m = {n: mean[:, i] for i, n in enumerate(names)}
    s = {n: std[:, i] for i, n in enumerate(names)}
    cols = {}
    for name in ("r0", "bck", "amp", "alpha"):
        cols[name] = np.exp(m[f"log_{name}"])
        cols[f"{name}_err"] = cols[name] * s[f"log_{name}"]
    ell = np.hypot(m["ell_cos"], m["ell_sin"])
    cols["ratio"] = np.exp(ell)
    cols["theta"] = 0.5 * np.arctan2(m["ell_sin"], m["ell_cos"])
    # Errors propagated from the two components: ln(ratio) takes the one along the vector
    # (ell_cos, ell_sin), 2 theta the one across it.
    c, sn = np.cos(2 * cols["theta"]), np.sin(2 * cols["theta"])
    cols["ratio_err"] = cols["ratio"] * np.hypot(c * s["ell_cos"], sn * s["ell_sin"])
    cols["theta_err"] = 0.5 * np.hypot(sn * s["ell_cos"], c * s["ell_sin"]) / np.maximum(ell, 1e-6)
    cols["beta"], cols["beta_err"] = m["beta"], s["beta"]
    for i in range(n_static):
        cols[f"stat_{i + 1}"], cols[f"stat_{i + 1}_err"] = m[f"stat_{i + 1}"], s[f"stat_{i + 1}"]
    for name in ("dx", "dy"):
        cols[name], cols[f"{name}_err"] = m[name], s[name]
    return cols


def canonical_ellipse(ratio: np.ndarray, theta: np.ndarray):
    """(ratio, theta) mapped to ratio >= 1, theta in (-pi/2, pi/2] (the network's convention)."""
    flip = ratio < 1
    ratio = np.where(flip, 1 / ratio, ratio)
    theta = np.where(flip, theta + math.pi / 2, theta)
    theta = (theta + math.pi / 2) % math.pi - math.pi / 2
    return ratio, theta


def match_even_sign(est: np.ndarray, truth: np.ndarray, even) -> np.ndarray:
    """``truth`` static modes (N, K) with its even modes' common sign flipped where that brings them nearer ``est``."""
    even = np.asarray(even, dtype=bool)
    if not even.any():
        return truth
    flipped = truth.copy()
    flipped[:, even] *= -1
    far = ((est - flipped)[:, even] ** 2).sum(1) < ((est - truth)[:, even] ** 2).sum(1)
    return np.where(far[:, None], flipped, truth)


#: Parameters the network estimates in ln: its ``_err`` / value is the standard deviation of ln(value).
LOG_OUTPUTS = ("r0", "bck", "amp", "alpha", "ratio")


def pulls(est: dict, truth: dict, names, even=(), log=LOG_OUTPUTS) -> dict[str, np.ndarray]:
    """Pulls (estimate - truth) / error of the columns ``names`` of a parameter table.

    ``est`` holds the columns and their ``_err``, ``truth`` the true values (a simulated set). The
    parameters in ``log`` are compared in ln, ln(estimate / truth) / (error / estimate), the
    variable in which the estimator's error is Gaussian (the CNN's ``LOG_OUTPUTS``; the fit's
    ``fit.LOG_PARAMS``); a non-positive estimate gives NaN. The Moffat ellipse is compared in its
    canonical form (ratio >= 1), the static modes with the even modes' common sign that fits best
    (``even`` flags the static modes ``stat_1..``): a single in-focus image does not tell it. For
    calibrated Gaussian errors the pulls have zero mean and unit standard deviation.
    """
    used = [*names, *(f"{n}_err" for n in names), "theta"]
    est = {k: np.asarray(v, dtype=float) for k, v in est.items() if k in used}
    truth = {k: np.asarray(v, dtype=float) for k, v in truth.items() if k in used}
    stat = [f"stat_{i + 1}" for i in range(len(even))]
    if stat:
        matched = match_even_sign(np.stack([est[n] for n in stat], 1), np.stack([truth[n] for n in stat], 1), even)
        truth.update({n: matched[:, i] for i, n in enumerate(stat)})
    if "ratio" in names:
        truth["ratio"] = canonical_ellipse(truth["ratio"], truth["theta"])[0]
        est["ratio"] = canonical_ellipse(est["ratio"], est["theta"])[0]
    out = {}
    for n in names:
        if n in log:
            with np.errstate(divide="ignore", invalid="ignore"):
                out[n] = np.log(est[n] / truth[n]) * est[n] / est[f"{n}_err"]
        else:
            out[n] = (est[n] - truth[n]) / est[f"{n}_err"]
    return out


def pull_stats(z: np.ndarray) -> dict:
    """Standard deviation, robust standard deviation (1.4826 MAD) and share within +-1 [%] of pulls."""
    z = np.asarray(z, dtype=float)
    z = z[np.isfinite(z)]
    return {"n": len(z), "std": float(np.std(z)), "robust_std": float(1.4826 * np.median(np.abs(z - np.median(z)))),
            "within_1": float(100 * np.mean(np.abs(z) <= 1))}


def simulated_like_training(meta: dict, n: int, seed: int, static: bool | None = None):
    """``n`` noisy frames (N, npix, npix) [e-] drawn as a model's training set was, and their truth columns.

    Same instrument, priors and detector noise (every frame noisy); ``static`` (default: the
    model's) switches the static aberrations, a share ``static_free_fraction`` of frames
    without them as in training.
    """
    from .model import PsfaoModel
    from .noise import add_noise
    from .simulate import DEFAULT_SIM, column_names, draw_parameters, render

    instrument = Instrument.from_dict(meta["instrument"])
    static = bool(meta["even_static_modes"]) if static is None else static
    config = dict(DEFAULT_SIM, priors=meta.get("priors") or DEFAULT_SIM["priors"], static=static,
                  static_free_fraction=meta.get("static_free_fraction", 0.0) if static else 0.0)
    rng = np.random.default_rng(seed)
    names = column_names(instrument, static)
    params = draw_parameters(instrument, config, n, rng)
    images = add_noise(render(PsfaoModel(instrument), instrument, params, names), instrument, rng)
    return images, {name: params[:, i] for i, name in enumerate(names)}


def calibrate_err_scale(estimator: "PsfEstimator", images: np.ndarray, truth: dict) -> dict[str, float]:
    """Per-target factors on the network's standard deviations that make its pulls of unit spread.

    Parameters
    ----------
    estimator : PsfEstimator
        The model (its current ``err_scale`` is ignored: the factors replace it).
    images : np.ndarray
        (N, npix, npix) [e-] simulated noisy frames, a validation set not used for testing.
    truth : dict
        Their true parameters (the simulator's columns).

    Returns
    -------
    dict
        {target: s}: the standard deviation of the pulls (mean - target) / std in target space
        (ln r0, ..., the static modes with the best common sign of the even ones), pulls beyond
        5 robust standard deviations left out (a few gross failures would otherwise set it).
        Targets the priors fix (ell_sin when theta is fixed) are left out: the set tells
        nothing of their errors.
    """
    mean, std = estimator.outputs(images, calibrated=False)
    names = [n for n in truth if not n.startswith("stat_")] + [f"stat_{i + 1}" for i in range(estimator.n_static)]
    target = PsfTargets(estimator.n_static)(np.stack([np.asarray(truth[n], dtype=float) for n in names], 1), names)
    k = slice(7, 7 + estimator.n_static)
    target[:, k] = match_even_sign(mean[:, k], target[:, k], estimator.even)
    scales = {}
    for j, t in enumerate(estimator.meta["targets"]):
        if np.ptp(target[:, j]) == 0:
            continue  # fixed by the priors (ell_sin when theta is): the set says nothing of its error
        z = (mean[:, j] - target[:, j]) / std[:, j]
        robust = 1.4826 * np.median(np.abs(z - np.median(z)))
        scales[t] = round(float(np.std(z[np.abs(z - np.median(z)) <= 5 * robust])), 4)
    return scales


# ---- metadata stored with the weights, checked at predict time ------------------------------
def model_metadata(instrument: Instrument, shard_meta: dict, even: list[bool], layout: str,
                   training: dict | None = None) -> dict:
    """What a model applies to and how it was made (``psf_model.json``); ``training``: data sizes, seeds."""
    return {
        "instrument": instrument.to_dict(),
        "wavelength_um": instrument.wavelength_um,
        "pixel_scale_mas": instrument.pixel_scale_mas,
        "npix": instrument.npix,
        "priors": shard_meta.get("priors"),
        "noise": shard_meta.get("noise"),
        "static_free_fraction": (shard_meta.get("config") or {}).get("static_free_fraction", 0.0),
        "normalisation": {"input": "asinh(frame / (total flux x stretch))", "stretch": STRETCH,
                          "centring": "brightest pixel at npix//2", "layout": layout},
        "targets": target_names(len(even)),
        "even_static_modes": [bool(e) for e in even],
        "training": training or {},
        "astrolearn_version": __version__,
    }


def locate_model(model) -> Path:
    """The directory of a model given as a run/model directory or as a shipped model's name."""
    from ..shipped import locate_model_dir

    return locate_model_dir(model, PACKAGED, METADATA_FILE, "PSF")


def read_metadata(model_dir: Path) -> dict:
    path = Path(model_dir) / METADATA_FILE
    if not path.exists():
        raise UserError(f"{model_dir}: not a PSF model directory (no {METADATA_FILE})")
    return json.loads(path.read_text())


def check_compatible(meta: dict, instrument: Instrument, where) -> None:
    """A model applies only to images of its instrument, wavelength, pixel scale and size."""
    made = meta["instrument"]
    problems = []
    if made["name"] != instrument.name:
        problems.append(f"instrument {made['name']!r} (asked {instrument.name!r})")
    if abs(meta["wavelength_um"] - instrument.wavelength_um) > 1e-6:
        problems.append(f"wavelength {meta['wavelength_um']} um (asked {instrument.wavelength_um} um)")
    if abs(meta["pixel_scale_mas"] - instrument.pixel_scale_mas) > 1e-6:
        problems.append(f"pixel scale {meta['pixel_scale_mas']} mas (asked {instrument.pixel_scale_mas} mas)")
    if meta["npix"] != instrument.npix:
        problems.append(f"image size {meta['npix']} (asked {instrument.npix})")
    if problems:
        raise UserError(f"{where}: model trained for " + ", ".join(problems) + "; train one for these images")


def packaged_model(instrument: Instrument, static: bool = True) -> Path:
    """The shipped model of an instrument: trained with static aberrations, or without (``static=False``).

    The model without is the network's counterpart of ``psf fit --static none``: told that the
    images have no static aberrations, it does not spend its estimate of A on ruling them out.
    """
    path = PACKAGED / (instrument.name if static else f"{instrument.name}-nostatic")
    if not (path / METADATA_FILE).exists():
        kind = "" if static else "aberration-free (--static none) "
        raise UserError(f"no pretrained {kind}model shipped for instrument {instrument.name!r}; pass --model RUN_DIR")
    return path


class PsfEstimator:
    """A trained PSF network with its metadata: ``predict(images) -> table``.

    Parameters
    ----------
    model_dir : path-like
        A training run directory (``astrolearn psf train``) or a shipped model folder.
    """

    def __init__(self, model_dir):
        from ..nn import fold_batchnorm
        from ..training import load_model

        self.dir = Path(model_dir)
        self.meta = read_metadata(self.dir)
        self.model = load_model(self.dir)
        fold_batchnorm(self.model.net)
        self.even = self.meta["even_static_modes"]
        self.n_static = len(self.even)
        norm = self.meta["normalisation"]
        self.transform = PsfTransform(norm["stretch"], norm.get("layout", "full"))

    def outputs(self, images: np.ndarray, batch_size: int = 64,
                calibrated: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Network outputs for frames (N, npix, npix): targets' means and standard deviations.

        ``calibrated``: the standard deviations are the network's times the model's
        ``err_scale`` (per target, 1 where absent; see :func:`calibrate_err_scale`); else the
        network's own. ``None`` for a model without them.
        """
        out = self.model.predict(self.transform(images), batch_size=batch_size)
        std = out.get("std")
        if std is not None and calibrated:
            scale = self.meta.get("err_scale") or {}
            std = std * np.array([scale.get(t, 1.0) for t in self.meta["targets"]])
        return out["mean"], std

    def predict(self, images: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
        """Parameter table (columns of ``psf fit``) for frames (N, npix, npix) [e-]."""
        mean, std = self.outputs(images, batch_size)
        cols = decode(mean, std, self.even)
        # The network estimates the PSF's shape, not its flux or background: those columns stay
        # empty (NaN) here; psf predict derives them by linear least squares (PsfFitter.render).
        for name in ("flux", "flux_err", "background", "background_err"):
            cols[name] = np.full(len(images), np.nan)
        return cols


def train_psf(data_dir, config, out_dir, *, resume=False, overwrite=False, overrides=(), layout="crop_bin",
              **trainer_options):
    """Train a PSF estimator on the shards of ``data_dir`` with input ``layout``; returns the Lightning trainer."""
    from ..io.shards import list_shards, read_meta
    from ..training import ShardDataModule

    shards = list_shards(data_dir)
    meta = read_meta(shards[0])
    if meta.get("domain") != "psf":
        raise UserError(f"{shards[0]}: not a PSF data set")
    instrument = Instrument.from_dict(meta["instrument"])
    for shard in shards[1:]:
        other = read_meta(shard).get("instrument")
        if other != meta["instrument"]:
            raise UserError(f"{shard}: made for another instrument description than {shards[0]}")
    n_static = sum(1 for n in json.loads(_names(shards[0])) if n.startswith("stat_"))
    config, even = training_config(instrument, n_static, config, overrides, out_dir, resume, layout)
    data = ShardDataModule(shards, "images", PsfTargets(n_static), target_names=target_names(n_static),
                           transform=PsfTransform(layout=layout), **config["data"])
    training = {"data": str(Path(data_dir).resolve()), "n_samples": len(data.dataset),
                "n_train": len(data.train_indices), "n_val": len(data.val_indices),
                "simulation_seed": meta.get("seed"), "training_seed": config["seed"],
                "init_from": config["init_from"]}
    return fit_psf(config, data, out_dir, model_metadata(instrument, meta, even, layout, training), resume=resume,
                   overwrite=overwrite, **trainer_options)


def training_config(instrument: Instrument, n_static: int, config, overrides, out_dir, resume: bool, layout: str):
    """The resolved training configuration of a PSF estimator and the even static modes of its pupil.

    Sets ``loss.sign_free`` to the even modes (a property of the pupil, not a choice) and refuses
    to resume or start from a run made with another input ``layout``.
    """
    from ..training import resolve_config
    from .pupils import even_modes

    even = list(even_modes(instrument.static_basis, instrument.pupil_array)) if n_static else []
    sign_free = [f"stat_{i + 1}" for i, e in enumerate(even) if e]
    config = resolve_config(config, [*overrides, {"loss": {"sign_free": sign_free}}])
    for other in ([out_dir] if resume else []) + ([config["init_from"]] if config["init_from"] else []):
        found = Path(other) / METADATA_FILE
        if found.is_file():
            made = json.loads(found.read_text())["normalisation"].get("layout", "full")
            if made != layout:
                raise UserError(f"{other}: trained with --input {made}, not {layout}")
    return config, even


def fit_psf(config, data, out_dir, metadata: dict, *, resume=False, overwrite=False, callbacks=(),
            **trainer_options):
    """Build the network for ``data`` and train it in ``out_dir``, writing ``metadata`` as ``psf_model.json``.

    The validation rows of ``metrics.csv`` also get ``samples_seen``, the training samples drawn
    so far (the learning curve: ``benchmarks/psf_learning_curve.py``); ``callbacks`` are added
    to Lightning's.
    """
    from ..training import build_module, fit
    from .online import SamplesSeen

    module = build_module(config, data)
    text = json.dumps(metadata, indent=1)
    return fit(config, data, module, out_dir, resume=resume, overwrite=overwrite, callbacks=[SamplesSeen(), *callbacks],
               on_ready=lambda: (Path(out_dir) / METADATA_FILE).write_text(text), **trainer_options)


def _names(shard) -> str:
    import h5py

    with h5py.File(shard, "r") as f:
        return f["params"].attrs["names"]


def export_model(run_dir, dest, which: str = "best") -> Path:
    """Ship a run as a model directory ``dest`` (:func:`astrolearn.shipped.export_run`).

    ``which``: "best" (lowest validation loss) or "last" (the final epoch: with a negative
    log-likelihood loss, the validation loss can rise through the variances while the errors of
    the estimates still fall).
    """
    from ..shipped import export_run

    return export_run(run_dir, dest, METADATA_FILE, which)
