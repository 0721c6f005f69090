"""The cophasing CNN: the 12 petal modes [nm] and their uncertainties from the in-focus/defocused pair.

Targets: the 12 modes with the common piston of the petals removed (:func:`optics.observable`):
no image tells it. Inputs: each channel divided by its total flux and stretched by
``asinh(x / STRETCH)``, so that the faint wings (where tip/tilt move light) and the core both
span a few units. A model directory holds the run (``checkpoints/``, ``config.yaml``) and
``cophase_model.json``: the optics, priors and noise it was trained on, checked at predict time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import UserError
from .optics import Optics, observable

METADATA_FILE = "cophase_model.json"
STRETCH = 1e-3  # asinh softening, in units of the channel's total flux
PACKAGED = Path(__file__).parent / "models"
DEFAULT_MODEL = "azimov"
CONFIG = Path(__file__).with_name("cophase_cnn.yaml")


class CophaseTransform:
    """Images (..., C, H, W) [e-] -> network input, same shape, float32 (picklable for workers)."""

    def __call__(self, images) -> np.ndarray:
        x = np.nan_to_num(np.asarray(images, dtype=np.float64))
        flux = np.clip(x.sum(axis=(-2, -1), keepdims=True), 1e-30, None)
        return np.arcsinh(x / (flux * STRETCH)).astype(np.float32)


class CophaseTargets:
    """Target function of :class:`~astrolearn.training.ShardDataset`: the observable modes (picklable)."""

    def __init__(self, names):
        self.names = list(names)

    def __call__(self, params, names):
        missing = [n for n in self.names if n not in names]
        if missing:
            raise UserError(f"no column {', '.join(missing)} in params (has {', '.join(names)})")
        return observable(params[:, [names.index(n) for n in self.names]])


def locate_model(model=None) -> Path:
    """Directory of a model given as a run directory or a shipped model's name (default: the shipped one)."""
    from ..shipped import locate_model_dir

    return locate_model_dir(DEFAULT_MODEL if model is None else model, PACKAGED, METADATA_FILE, "cophasing")


class CophaseEstimator:
    """A trained cophasing CNN: ``estimate(images) -> (modes, std)`` [nm].

    Parameters
    ----------
    model : path-like or str, optional
        A training run directory (``astrolearn cophase train``) or a shipped model's name
        (default: the shipped ``azimov``).
    """

    def __init__(self, model=None):
        from ..nn import fold_batchnorm
        from ..training import load_model

        self.dir = locate_model(model)
        self.meta = self.read_meta(self.dir)
        self.optics = Optics.from_dict(self.meta["optics"])
        self.model = load_model(self.dir)
        fold_batchnorm(self.model.net)
        self.transform = CophaseTransform()

    @staticmethod
    def read_meta(model_dir) -> dict:
        """The metadata (``cophase_model.json``) of a model directory."""
        return json.loads((Path(model_dir) / METADATA_FILE).read_text())

    def check(self, images: np.ndarray, where) -> None:
        """Refuse images of another shape than the model's (channels, pixels)."""
        want = (self.optics.channels, self.optics.npix, self.optics.npix)
        if images.ndim != 4 or images.shape[1:] != want:
            raise UserError(f"{where}: images of shape {images.shape[1:]} for a model trained on {want} "
                            "(channels: in focus then defocused)")

    def estimate(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Modes (common piston removed) and standard deviations (N, n_modes) [nm] from images (N, C, npix, npix) [e-]."""
        out = self.model.predict(self.transform(images), batch_size=batch_size)
        return observable(out["mean"]), out["std"].astype(np.float64)


def train_cophase(data_dir, out_dir, config=None, *, resume=False, overwrite=False, overrides=(),
                  **trainer_options):
    """Train a cophasing CNN on the shards of ``data_dir``; returns the Lightning trainer."""
    from ..io.shards import list_shards, read_meta
    from ..training import ShardDataModule, build_module, fit, resolve_config

    shards = list_shards(data_dir)
    meta = read_meta(shards[0])
    if meta.get("domain") != "cophase":
        raise UserError(f"{shards[0]}: not a cophasing data set (astrolearn cophase simulate)")
    for shard in shards[1:]:
        if read_meta(shard).get("instrument") != meta["instrument"]:
            raise UserError(f"{shard}: made with other optics than {shards[0]}")
    optics = Optics.from_dict(meta["instrument"])
    config = resolve_config(CONFIG if config is None else config, overrides)
    data = ShardDataModule(shards, "images", CophaseTargets(optics.names), target_names=optics.names,
                           transform=CophaseTransform(), **config["data"])
    metadata = {
        "optics": optics.to_dict(), "priors": meta.get("priors"), "noise": meta.get("noise"),
        "normalisation": {"input": "asinh(image / (channel flux x stretch))", "stretch": STRETCH},
        "targets": optics.names, "target_note": "common piston of the petals removed",
        "training": {"data": str(Path(data_dir).resolve()), "n_samples": len(data.dataset),
                     "n_train": len(data.train_indices), "n_val": len(data.val_indices),
                     "simulation_seed": meta.get("seed"), "training_seed": config["seed"]},
        "astrolearn_version": __version__,
    }
    text = json.dumps(metadata, indent=1)
    module = build_module(config, data)
    return fit(config, data, module, out_dir, resume=resume, overwrite=overwrite,
               on_ready=lambda: (Path(out_dir) / METADATA_FILE).write_text(text), **trainer_options)


def export_model(run_dir, dest, which: str = "best") -> Path:
    """Ship a run as a model directory ``dest`` (:func:`astrolearn.shipped.export_run`)."""
    from ..shipped import export_run

    return export_run(run_dir, dest, METADATA_FILE, which)
