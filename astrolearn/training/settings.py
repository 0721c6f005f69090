"""Training configurations: defaults, resolution and the bundled example configurations."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..config import load_config, read_yaml
from ..errors import UserError

CONFIG_DIR = Path(__file__).with_name("configs")

#: Metric that selects the best checkpoint, stops early and drives the plateau scheduler.
MONITOR = "val/loss"


@functools.lru_cache(maxsize=1)
def _defaults() -> dict:
    return read_yaml(CONFIG_DIR / "defaults.yaml")


def resolve_config(source=None, overrides: Iterable[str | Mapping] = ()) -> dict:
    """Complete a training configuration with the defaults of ``configs/defaults.yaml``.

    Parameters
    ----------
    source : path-like, mapping or None
        The user's configuration (YAML file, name of a bundled example such as ``"psf_cnn"``,
        or mapping). Resolving an already resolved configuration returns an equal one.
    overrides : iterable of str or mapping
        Applied after ``source``: ``"optimizer.lr=3e-4"`` strings or mappings.

    Returns
    -------
    dict
        The resolved configuration.

    Raises
    ------
    UserError
        On an unknown option, a value of the wrong type or a missing ``model`` section.
    """
    if isinstance(source, (str, os.PathLike)) and not Path(source).suffix:
        source = example_config(str(source))
    config = load_config(source, overrides, defaults=_defaults())
    if not isinstance(config.get("model"), Mapping):
        raise UserError("the training configuration has no model section (see astrolearn/nn/builder.py)")
    return config


def example_config(name: str) -> Path:
    """Path of a bundled example configuration (``"psf_cnn"``, ``"zpdf_cnn"``)."""
    path = CONFIG_DIR / f"{name}.yaml"
    if name == "defaults" or not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "defaults")
        raise UserError(f"no example configuration {name!r} (known: {', '.join(known)})")
    return path
