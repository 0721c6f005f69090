"""Training: the CNN through the common engine, its calibration, and the descriptor baseline.

A run directory holds, besides the engine's files (``config.yaml``, ``checkpoints/``, logs):

- ``data/shard-*.h5``: the training shards (:mod:`astrolearn.redshift.reliability.dataset`);
- ``reliability_model.json``: grid, classes, label scheme, input channels, calibration and
  training summary, written once training and calibration are done;
- ``baseline_gbm.pkl``: the descriptors + gradient-boosting baseline, trained on the same
  training split (pickle: load only files you made).
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np

from ...errors import UserError
from ...io.shards import data_record
from .classifier import (
    BASELINE_FILE,
    CHANNELS,
    PdfTransform,
    fit_calibration,
    model_metadata,
    nll,
    write_metadata,
)
from .dataset import SchemeTargets, read_shard_columns, shard_grid
from .descriptors import DESCRIPTOR_NAMES
from .labels import LabelScheme

#: The reliability network configuration shipped with this package.
DEFAULT_CONFIG = Path(__file__).with_name("reliability_cnn.yaml")
#: Default max-pooling of the log PDF before the network (see ``PdfTransform``).
DEFAULT_POOL = 16


def train_reliability(shards, scheme: LabelScheme, out_dir, *, config=DEFAULT_CONFIG, overrides=(),
                      channels=CHANNELS, pool: int = DEFAULT_POOL, resume: bool = False, overwrite: bool = False,
                      baseline: bool = True, **trainer_options) -> dict:
    """Train, calibrate and describe a reliability classifier in ``out_dir``.

    Parameters
    ----------
    shards : list of path-like
        Training shards (see :func:`~astrolearn.redshift.reliability.dataset.write_training_shards`).
    scheme : LabelScheme
        Labels to learn.
    out_dir : path-like
        Run directory.
    config : str or path-like or mapping
        Training configuration (default: ``reliability_cnn.yaml`` of this package), or the name
        of an example configuration of the training engine (``zpdf_cnn``).
    overrides : sequence of str
        ``section.key=value`` overrides of the configuration.
    channels : sequence of str
        Network input channels (see :class:`~astrolearn.redshift.reliability.classifier.PdfTransform`).
    pool : int
        Max-pooling of the log PDF before the network.
    resume, overwrite : bool
        See :func:`astrolearn.training.fit`.
    baseline : bool
        Also train the descriptors + gradient-boosting baseline.
    **trainer_options
        ``max_epochs``, ``accelerator``, ... (see :func:`astrolearn.training.fit`).

    Returns
    -------
    dict
        The ``training`` summary stored in the metadata (class counts, validation NLL before and
        after calibration, baseline validation accuracy).
    """
    from ...training import ShardDataModule, build_module, fit, load_model, resolve_config

    out_dir = Path(out_dir)
    grid = shard_grid(shards)
    config = resolve_config(config, overrides)
    data = ShardDataModule(shards, "log_pdf", SchemeTargets(scheme), target_names=scheme.classes,
                           transform=PdfTransform(grid, channels, pool), **config["data"])
    counts = np.bincount(data.train_targets(), minlength=scheme.n_classes)
    if np.count_nonzero(counts) < 2:
        raise UserError(f"the training split has a single class ({dict(zip(scheme.classes, counts.tolist()))})")
    module = build_module(config, data)
    fit(config, data, module, out_dir, resume=resume, overwrite=overwrite, **trainer_options)

    network = load_model(out_dir)
    val_labels = data.dataset.targets[data.val_indices]
    logits = _logits(network, data)
    calibration = fit_calibration(logits, val_labels)
    summary = {
        "n_train": int(len(data.train_indices)), "n_val": int(len(data.val_indices)),
        "train_counts": dict(zip(scheme.classes, counts.tolist())),
        "val_nll_raw": nll(_softmax(logits), val_labels),
        "val_nll_calibrated": nll(calibration(logits), val_labels),
        "data": data_record(shards),
    }
    if baseline:
        summary["baseline_val_accuracy"] = train_baseline(shards, scheme, data.train_indices, data.val_indices,
                                                          out_dir / BASELINE_FILE, grid)
    write_metadata(out_dir, model_metadata(grid, scheme, channels, pool, calibration, summary))
    return summary


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _logits(network, data, batch_size: int = 512) -> np.ndarray:
    """Raw outputs of ``network`` on the validation split of ``data``, in index order."""
    import torch
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(Subset(data.dataset, data.val_indices), batch_size=batch_size)
    with torch.inference_mode():
        out = np.concatenate([network(x).numpy() for x, _ in loader])
    data.dataset.close()
    return out


def train_baseline(shards, scheme: LabelScheme, train_indices, val_indices, path, grid) -> float:
    """Fit the descriptors + gradient-boosting classifier and pickle it to ``path``.

    Returns
    -------
    float
        Accuracy on the validation split.
    """
    import sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier

    columns, arrays = read_shard_columns(shards, None)
    names = list(columns)
    labels = SchemeTargets(scheme)(np.column_stack([columns[n] for n in names]), names)
    x = arrays["descriptors"]
    # Balanced like the CNN, so that the 3-class decisions (argmax) are comparable.
    gbm = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, class_weight="balanced",
                                         early_stopping=True, random_state=0)
    gbm.fit(x[train_indices], labels[train_indices])
    with open(path, "wb") as f:
        pickle.dump({"model": gbm, "descriptors": list(DESCRIPTOR_NAMES), "classes": list(scheme.classes),
                     "grid": grid.meta(), "sklearn_version": sklearn.__version__}, f)
    return float(gbm.score(x[val_indices], labels[val_indices]))


def load_baseline(path, missing_ok: bool = False) -> dict | None:
    """The pickled baseline: a ``.pkl`` file, or the one of a run directory.

    Returns None when a run directory has none, or the file is missing and ``missing_ok``.
    """
    path = Path(path)
    if path.is_dir():
        path, missing_ok = path / BASELINE_FILE, True
    if not path.is_file():
        if missing_ok:
            return None
        raise UserError(f"{path}: no such baseline file")
    import sklearn

    try:
        with warnings.catch_warnings():
            # A pickle of another scikit-learn version: said once below, in one line.
            warnings.simplefilter("ignore")
            with open(path, "rb") as f:
                baseline = pickle.load(f)  # noqa: S301 (a file this package wrote)
    except Exception as exc:  # unpickling raises whatever the pickled classes raise
        raise UserError(f"{path}: not a baseline this scikit-learn {sklearn.__version__} can read ({exc})") from None
    made = baseline.get("sklearn_version")
    if made != sklearn.__version__:
        warnings.warn(f"{path}: baseline made with scikit-learn {made}, read with {sklearn.__version__}; "
                      "its scores may differ (retrain: benchmarks/redshift_reliability.py baseline)", stacklevel=2)
    return baseline