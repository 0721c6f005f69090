"""The common training engine: data streaming from shards, Lightning modules, ``fit``, loading.

Every domain trains through the same pieces::

    from astrolearn.training import ShardDataModule, build_module, fit, resolve_config

    config = resolve_config("my.yaml", ["optimizer.lr=3e-4"])
    data = ShardDataModule(shards, "images", select_columns("r0", "L0"), transform=normalise,
                           **config["data"])
    trainer = fit(config, data, build_module(config, data), "runs/psf")

and predicts without Lightning (fast start-up)::

    from astrolearn.training import load_model
    model = load_model("runs/psf")          # a RegressionModel or ClassificationModel
    out = model.predict(images)             # {"mean": ..., "std": ...} or {"probs": ..., "label": ...}

Names are imported on first use, so that ``import astrolearn.training`` stays cheap and only
``ShardDataModule``, ``build_module``, the modules and ``fit`` pay for importing Lightning.
"""

import importlib

_EXPORTS = {
    "resolve_config": "settings",
    "example_config": "settings",
    "ShardDataset": "data",
    "select_columns": "data",
    "RegressionModel": "tasks",
    "ClassificationModel": "tasks",
    "load_model": "tasks",
    "find_checkpoint": "tasks",
    "ShardDataModule": "datamodule",
    "RegressionModule": "modules",
    "ClassificationModule": "modules",
    "build_module": "modules",
    "fit": "run",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
