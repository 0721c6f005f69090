"""Training: the CNN through the common engine, its calibration, and the random-forest baseline.

A run directory holds the engine's files (``config.yaml``, ``checkpoints/``, logs), then
:data:`~astrolearn.spectra.classifier.METADATA_FILE` (grid, classes, calibration, training
summary) once training and calibration are done, and ``baseline_rf.pkl`` (random forest on
binned inputs, trained on the same training split; pickle: load only files you made).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io.shards import data_record
from ..redshift.reliability.classifier import fit_calibration, nll
from ..redshift.reliability.train import _logits, _softmax
from .classifier import METADATA_FILE, model_metadata, shard_input
from .simulate import CLASSES

DEFAULT_CONFIG = Path(__file__).with_name("spectra_cnn.yaml")
RF_FILE = "baseline_rf.pkl"
#: Pixels are averaged into this many bins for the random forest.
RF_BINS = 64


def shard_grid(shards) -> dict:
    """The model grid of simulated shards (all must share it)."""
    from ..io.shards import read_meta

    grids = []
    for p in shards:
        meta = read_meta(p)
        if meta.get("domain") != "spectra":
            raise UserError(f"{p}: not a shard of 'astrolearn spectra simulate' (domain {meta.get('domain')!r})")
        inst = meta["instrument"]
        grids.append({"name": inst["name"], "wmin": float(inst["wmin"]), "dw": float(inst["dw"]),
                      "npix": int(inst["npix"]), "resolution": float(inst["resolution"])})
    if any(g != grids[0] for g in grids):
        raise UserError("the training shards have different wavelength grids")
    return grids[0]


def labels_of(params, names):
    """Target function of the shards: the ``label`` column (index in CLASSES)."""
    return params[:, names.index("label")].astype(np.int64)


def binned(x: np.ndarray, bins: int = RF_BINS) -> np.ndarray:
    """Network inputs (N, 2, M) -> random-forest features (N, 2 x bins): channel means per bin."""
    n, c, m = x.shape
    edges = np.linspace(0, m, bins + 1).astype(int)
    return (np.add.reduceat(x, edges[:-1], axis=2) / np.diff(edges)).reshape(n, c * bins)


def read_inputs(shards):
    """All network inputs (N, 2, M) and labels (N,) of a list of shards (in order)."""
    import h5py

    xs, ys = [], []
    for p in shards:
        with h5py.File(p, "r") as f:
            xs.append(shard_input({"flux": f["flux"][...], "noise": f["noise"][...]}))
            ys.append(labels_of(f["params"][...], json.loads(f["params"].attrs["names"])))
    return np.concatenate(xs), np.concatenate(ys)


def train_classifier(shards, out_dir, *, config=DEFAULT_CONFIG, overrides=(), resume=False, overwrite=False,
                     baseline=True, **trainer_options) -> dict:
    """Train, calibrate and describe a spectrum classifier in ``out_dir``.

    Parameters
    ----------
    shards : list of path-like
        Shards of ``astrolearn spectra simulate``.
    out_dir : path-like
        Run directory.
    config : path-like or mapping
        Training configuration (default ``spectra_cnn.yaml`` of this package).
    overrides : sequence of str
        ``section.key=value`` overrides.
    resume, overwrite : bool
        See :func:`astrolearn.training.fit`.
    baseline : bool
        Also train the random-forest baseline.
    **trainer_options
        ``max_epochs``, ``accelerator``, ... (see :func:`astrolearn.training.fit`).

    Returns
    -------
    dict
        The training summary stored in the metadata.
    """
    from ..training import ShardDataModule, build_module, fit, load_model, resolve_config

    out_dir = Path(out_dir)
    grid = shard_grid(shards)
    config = resolve_config(config, overrides)
    data = ShardDataModule(shards, ["flux", "noise"], labels_of, target_names=CLASSES, transform=shard_input,
                           **config["data"])
    counts = np.bincount(data.train_targets(), minlength=len(CLASSES))
    if np.count_nonzero(counts) < 2:
        raise UserError(f"the training split has a single class ({dict(zip(CLASSES, counts.tolist()))})")
    fit(config, data, build_module(config, data), out_dir, resume=resume, overwrite=overwrite, **trainer_options)
    network = load_model(out_dir)
    val_labels = data.dataset.targets[data.val_indices]
    logits = _logits(network, data)
    calibration = fit_calibration(logits, val_labels)
    summary = {"n_train": int(len(data.train_indices)), "n_val": int(len(data.val_indices)),
               "train_counts": dict(zip(CLASSES, counts.tolist())),
               "val_nll_raw": nll(_softmax(logits), val_labels),
               "val_nll_calibrated": nll(calibration(logits), val_labels),
               "val_accuracy": float(np.mean(logits.argmax(axis=1) == val_labels)),
               "data": data_record(shards)}
    if baseline:
        summary["rf_val_accuracy"] = train_rf(shards, data.train_indices, data.val_indices, out_dir / RF_FILE)
    (out_dir / METADATA_FILE).write_text(json.dumps(model_metadata(grid, calibration, summary), indent=1))
    return summary


def train_rf(shards, train_indices, val_indices, path) -> float:
    """Fit the random forest on binned inputs, pickle it to ``path``; validation accuracy."""
    import sklearn
    from sklearn.ensemble import RandomForestClassifier

    x, y = read_inputs(shards)
    feats = binned(x)
    rf = RandomForestClassifier(n_estimators=100, min_samples_leaf=3, n_jobs=1, random_state=0)
    rf.fit(feats[train_indices], y[train_indices])
    with open(path, "wb") as f:
        pickle.dump({"model": rf, "bins": RF_BINS, "classes": list(CLASSES), "sklearn_version": sklearn.__version__}, f)
    return float(rf.score(feats[val_indices], y[val_indices]))


def load_rf(path):
    """The pickled random forest of a run directory (a file this package wrote)."""
    path = Path(path)
    path = path / RF_FILE if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"{path}: no random-forest baseline")
    with open(path, "rb") as f:
        return pickle.load(f)  # noqa: S301 (a file this package wrote)
