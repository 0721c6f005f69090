"""The spectrum classifier: network input, resampling to a model's grid, model files, prediction.

Network input (:func:`network_input`), two channels on the model's pixel grid:

- ``flux / s``, clipped to +-:data:`CLIP`, where ``s`` is the median absolute flux of the
  usable pixels (a unit-free shape: the same for flux-calibrated and relative spectra);
- ``s * sqrt(ivar)`` / :data:`SNR_SCALE`, clipped to [0, :data:`CLIP`]: the per-pixel S/N of
  that scale, 0 for unusable pixels (the network learns to ignore them).

A spectrum of another grid is first binned onto the model's (:func:`to_grid`): inverse-variance
weighted means of the input pixels inside each model pixel; model pixels without an input
pixel get ivar 0. A grid covering less than :data:`MIN_COVERAGE` of the model's window is
refused in one line naming both ranges.

Model files: a directory holding :data:`METADATA_FILE` (:func:`model_metadata`: classes, grid,
calibration, training summary) and ``checkpoints/``: a training run, or a model exported from one
(:func:`export_model`), as the shipped ones in ``astrolearn/spectra/models/<name>/``. Probabilities are
calibrated by temperature scaling with class biases fitted on the validation split
(:func:`astrolearn.redshift.reliability.classifier.fit_calibration`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import UserError
from ..redshift.reliability.classifier import Calibration
from .simulate import CLASSES

METADATA_FILE = "spectra_model.json"
PACKAGED_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "nisp"
CLIP = 20.0
SNR_SCALE = 10.0
#: Smallest share of a model's window that an input grid must cover.
MIN_COVERAGE = 0.5


def network_input(flux, ivar, block: int = 256) -> np.ndarray:
    """(N, M) flux and inverse variance on the model grid -> (N, 2, M) float32 (module doc).

    Rows are normalised ``block`` at a time: whole-array float64 temporaries of a large batch
    (100 MB each for 8192 x 1550) cost more in memory traffic than the arithmetic.
    """
    flux = np.asarray(flux)
    ivar = np.asarray(ivar)
    out = np.empty(flux.shape[:-1] + (2, flux.shape[-1]), dtype=np.float32)
    flat_f, flat_i = flux.reshape(-1, flux.shape[-1]), ivar.reshape(-1, ivar.shape[-1])
    flat_o = out.reshape(-1, 2, flux.shape[-1])
    for i0 in range(0, len(flat_f), block):
        flat_o[i0:i0 + block] = _normalised(flat_f[i0:i0 + block], flat_i[i0:i0 + block])
    return out


def _normalised(flux, ivar) -> np.ndarray:
    flux = np.asarray(flux, dtype=np.float64)
    ivar = np.asarray(ivar, dtype=np.float64)
    good = (ivar > 0) & np.isfinite(flux) & np.isfinite(ivar)
    # median of |flux| over the good pixels: sorted with the bad ones last (30x faster than nanmedian)
    a = np.sort(np.where(good, np.abs(flux), np.inf), axis=-1)
    n = good.sum(axis=-1, keepdims=True)
    last = a.shape[-1] - 1
    s = 0.5 * (np.take_along_axis(a, np.clip((n - 1) // 2, 0, last), -1)
               + np.take_along_axis(a, np.clip(n // 2, 0, last), -1))
    s = np.where((n > 0) & np.isfinite(s) & (s > 0), s, 1.0)
    x0 = np.clip(np.where(good, flux, 0.0) / s, -CLIP, CLIP)
    x1 = np.clip(s * np.sqrt(np.where(good, ivar, 0.0)) / SNR_SCALE, 0.0, CLIP)
    return np.stack([x0, x1], axis=-2)


def shard_input(arrays: dict) -> np.ndarray:
    """Shard sample ``{"flux", "noise"}`` -> network input (2, M) (the training transform)."""
    sig = np.asarray(arrays["noise"], dtype=np.float64)
    ok = np.isfinite(sig) & (sig > 0)
    return network_input(arrays["flux"], np.where(ok, 1.0 / np.where(ok, sig, 1.0) ** 2, 0.0))


def model_wave(grid: dict) -> np.ndarray:
    """Pixel centres [Angstrom] of a model grid ``{"wmin", "dw", "npix"}``."""
    return float(grid["wmin"]) + float(grid["dw"]) * np.arange(int(grid["npix"]))


def to_grid(wave, flux, ivar, grid: dict, where="input"):
    """Bin spectra onto a model grid (module doc).

    Parameters
    ----------
    wave : ndarray (M_in,)
        Input wavelengths [Angstrom].
    flux, ivar : ndarray (N, M_in)
    grid : dict
        Model grid ``{"wmin", "dw", "npix", "name"}``.
    where : str
        Name of the input, for messages.

    Returns
    -------
    flux, ivar : ndarray (N, npix)

    Raises
    ------
    UserError
        When the input covers less than :data:`MIN_COVERAGE` of the model's window.
    """
    out_wave = model_wave(grid)
    dw = float(grid["dw"])
    lo, hi = out_wave[0] - dw / 2, out_wave[-1] + dw / 2
    wave = np.asarray(wave, dtype=np.float64)
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    ivar = np.atleast_2d(np.asarray(ivar, dtype=np.float64))
    w = np.where((ivar > 0) & np.isfinite(flux) & np.isfinite(ivar), ivar, 0.0)
    used = wave[(w > 0).any(axis=0)]
    span = (used.min(), used.max()) if used.size else (wave.min(), wave.max())
    if used.size < 2 or np.mean((out_wave >= span[0]) & (out_wave <= span[1])) < MIN_COVERAGE:
        raise UserError(f"{where}: covers {span[0]:.0f}-{span[1]:.0f} A, outside the {grid.get('name', '')} "
                        f"model's range {lo:.0f}-{hi:.0f} A (at least {MIN_COVERAGE:.0%} of it is needed)")
    f = np.where(w > 0, flux, 0.0)
    step = float(np.median(np.diff(wave)))
    if step <= dw:
        # inverse-variance weighted mean of the input pixels inside each model pixel
        idx = np.floor((wave - lo) / dw).astype(np.int64)
        inside = (idx >= 0) & (idx < out_wave.size)
        sw = np.zeros((out_wave.size, len(flux)))
        swf = np.zeros_like(sw)
        np.add.at(sw, idx[inside], w[:, inside].T)
        np.add.at(swf, idx[inside], (w * f)[:, inside].T)
        return (swf / np.where(sw > 0, sw, 1.0)).T, sw.T
    # coarser input pixels: interpolated flux, ivar shared between the model pixels of one input pixel
    out_f = np.zeros((len(flux), out_wave.size))
    out_w = np.zeros_like(out_f)
    for k in range(len(flux)):
        good = w[k] > 0
        if good.sum() >= 2:
            out_f[k] = np.interp(out_wave, wave[good], f[k, good], left=0.0, right=0.0)
            out_w[k] = np.interp(out_wave, wave[good], w[k, good], left=0.0, right=0.0) * dw / step
    return out_f, out_w


def model_metadata(grid: dict, calibration: Calibration | None, training: dict | None = None) -> dict:
    """What a classifier needs besides its weights (:data:`METADATA_FILE`)."""
    return {"format": 1, "kind": "astrolearn.spectra", "classes": list(CLASSES), "grid": grid,
            "input": {"channels": ["flux/s", "s*sqrt(ivar)/10"], "clip": CLIP, "snr_scale": SNR_SCALE},
            "calibration": None if calibration is None else calibration.to_dict(),
            "training": training or {}, "astrolearn_version": __version__}


def locate_model(model=None) -> Path:
    """Directory of a model given as a run/model directory or a shipped model's name (default :data:`DEFAULT_MODEL`)."""
    from ..shipped import locate_model_dir

    return locate_model_dir(DEFAULT_MODEL if model is None else model, PACKAGED_DIR, METADATA_FILE, "spectra")


def shipped_models() -> list[str]:
    """Names of the shipped models, :data:`DEFAULT_MODEL` first."""
    from ..shipped import shipped_models as names

    return sorted(names(PACKAGED_DIR, METADATA_FILE), key=lambda n: (n != DEFAULT_MODEL, n))


class SpectraClassifier:
    """A trained classifier: ``predict(wave, flux, ivar) -> calibrated probabilities (N, 3)``.

    Parameters
    ----------
    model : path-like or str, optional
        Training run directory, exported model directory, or shipped model name (default
        :data:`DEFAULT_MODEL`).
    """

    def __init__(self, model=None):
        from ..nn import fold_batchnorm
        from ..shipped import display_name
        from ..training import load_model

        path = locate_model(model)
        self.name = display_name(path, PACKAGED_DIR)
        meta_path = path / METADATA_FILE
        try:
            self.meta = json.loads(meta_path.read_text())
            self.grid = dict(self.meta["grid"])
            self.classes = list(self.meta["classes"])
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{meta_path}: not a spectra model description ({exc})") from None
        self.network = load_model(path)
        fold_batchnorm(self.network.net)
        if list(self.network.names) != self.classes:
            raise UserError(f"{self.name}: weights for classes {self.network.names}, metadata says {self.classes}")
        self.calibration = Calibration.from_dict(self.meta.get("calibration"), len(self.classes))
        self.wave = model_wave(self.grid)

    def logits(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Raw outputs (N, 3) for network inputs (N, 2, M).

        The default batch, 2**17 input pixels (256 NISP spectra, 84 optical ones), keeps the
        activations in cache: on a 2-core CPU the networks run 3-7x faster than with batches of
        4096 (``benchmarks/RESULTS.md``, CNN throughput).
        """
        import torch

        batch_size = batch_size or max(16, 2**17 // x.shape[-1])
        out = np.empty((len(x), len(self.classes)), dtype=np.float32)
        with torch.inference_mode():
            for i0 in range(0, len(x), batch_size):
                out[i0:i0 + batch_size] = self.network(torch.from_numpy(x[i0:i0 + batch_size])).numpy()
        return out

    def predict(self, wave, flux, ivar, where="input") -> np.ndarray:
        """Calibrated probabilities (N, 3), columns :attr:`classes`, for spectra on any grid."""
        wave = np.asarray(wave, dtype=np.float64)
        same = wave.size == self.wave.size and np.allclose(wave, self.wave, rtol=0, atol=1e-3 * self.grid["dw"])
        if not same:
            flux, ivar = to_grid(wave, flux, ivar, self.grid, where)
        return self.calibration(self.logits(network_input(flux, ivar)))


def export_model(run_dir, dest, which: str = "best") -> Path:
    """Ship a run as a model directory ``dest`` (:func:`astrolearn.shipped.export_run`)."""
    from ..shipped import export_run

    return export_run(run_dir, dest, METADATA_FILE, which)
