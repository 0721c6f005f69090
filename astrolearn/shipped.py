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


def display_name(path: Path, packaged: Path) -> str:
    """How reports name a model: ``shipped model 'NAME'`` for one in ``packaged``, else its path."""
    path = Path(path)
    return f"shipped model {path.name!r}" if path.resolve().parent == Path(packaged).resolve() else str(path)


def export_run(run_dir, dest, metadata_file: str, which: str = "best") -> Path:
    """Make a model directory (a shipped model) from a training run: its metadata and one checkpoint.

    The checkpoint keeps the weights and hyper-parameters, not the optimiser state, and is named for
    the epoch it holds, ``dest/checkpoints/<which>-epoch=NNN.ckpt`` (an earlier export there is
    replaced); the metadata's ``training`` records ``epochs_trained``, ``epoch_kept`` (0-based),
    ``kept`` and the ``training_seed`` of the run's configuration.

    Parameters
    ----------
    run_dir : path-like
        A run directory written by :func:`astrolearn.training.fit`, holding ``metadata_file``.
    dest : path-like
        The model directory to write.
    metadata_file : str
        The domain's metadata file name.
    which : {"best", "last"}
        The checkpoint of lowest validation loss, or the final epoch's.
    """
    import json

    import torch

    from .training import find_checkpoint

    run_dir, dest = Path(run_dir), Path(dest)
    try:
        meta = json.loads((run_dir / metadata_file).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{run_dir}: not a training run ({metadata_file}: {exc})") from None
    state = torch.load(find_checkpoint(run_dir, which), map_location="cpu", weights_only=True)
    last = torch.load(find_checkpoint(run_dir, "last"), map_location="cpu", weights_only=True)
    (dest / "checkpoints").mkdir(parents=True, exist_ok=True)
    for stale in (dest / "checkpoints").glob("*.ckpt"):
        stale.unlink()
    torch.save({"hyper_parameters": state["hyper_parameters"], "state_dict": state["state_dict"]},
               dest / "checkpoints" / f"{which}-epoch={state['epoch']:03d}.ckpt")
    meta["training"] = dict(meta.get("training") or {}, epochs_trained=last["epoch"] + 1,
                            epoch_kept=state["epoch"], kept=which)
    meta["training"].setdefault("training_seed", state["hyper_parameters"]["config"].get("seed"))
    (dest / metadata_file).write_text(json.dumps(meta, indent=1))
    return dest
