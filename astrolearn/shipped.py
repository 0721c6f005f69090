"""Models shipped inside the package, one folder per model: the lookup every domain shares."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError


def shipped_models(packaged: Path, metadata_file: str) -> list[str]:
    """Names of the models shipped in ``packaged`` (the folders holding ``metadata_file``)."""
    return sorted(p.parent.name for p in Path(packaged).glob(f"*/{metadata_file}"))


def locate_model_dir(model: str | os.PathLike, packaged: Path, metadata_file: str, kind: str) -> Path:
    """Directory of a model given as a run/model directory or as the name of a model shipped in ``packaged``.

    Raises
    ------
    UserError
        When ``model`` is neither, naming the shipped models (``kind``: the domain, for the message).
    """
    path = Path(model)
    if (path / metadata_file).is_file():
        return path
    names = shipped_models(packaged, metadata_file)
    if str(model) in names:
        return Path(packaged) / str(model)
    raise UserError(f"{model}: neither a {kind} model directory (with {metadata_file}) nor a shipped model "
                    f"({', '.join(names) or 'none shipped'})")
