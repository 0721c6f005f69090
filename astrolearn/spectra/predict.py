"""``classes.csv`` for any input that ``astrolearn redshift estimate`` reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io.shards import atomic_write

COLUMNS = ("targetid", "class", "p_galaxy", "p_star", "p_qso")


def classify_input(input_path, model=None, chunk_size: int = 4096):
    """The classifier, probabilities (N, 3) and targetids (N,) of every spectrum of an input, in order.

    ``model=None``: the shipped model whose wavelength range the input's first chunk covers.
    """
    from ..redshift import io as rio
    from .classifier import SpectraClassifier

    clf = None if model is None else SpectraClassifier(model)
    probs, tids = [], []
    for ch in rio.open_input(input_path, chunk_size):
        sp = ch.load()
        where = str(ch.source)
        if clf is None:
            clf, p = _shipped_model_for(sp, where)
        else:
            p = clf.predict(sp.wave, sp.flux, sp.ivar, where=where)
        probs.append(p)
        tids.append(sp.targetid)
    return clf, np.concatenate(probs), np.concatenate(tids)


def _shipped_model_for(sp, where):
    """(classifier, probabilities) of the first shipped model (the default first) that takes ``sp``."""
    from .classifier import SpectraClassifier, shipped_models

    refused = []
    for name in shipped_models():
        clf = SpectraClassifier(name)
        try:
            return clf, clf.predict(sp.wave, sp.flux, sp.ivar, where=where)
        except UserError as exc:  # outside this model's range: try the next one
            refused.append(str(exc).removeprefix(f"{where}: "))
    raise UserError(f"{where}: no shipped model takes it ({'; '.join(refused)})")


def write_classes(path, probs, targetid, classes) -> Path:
    """Write ``classes.csv`` (columns :data:`COLUMNS`) atomically."""
    order = [classes.index(c) for c in ("GALAXY", "STAR", "QSO")]
    lines = [",".join(COLUMNS)]
    for t, p in zip(targetid, probs):
        lines.append(f"{int(t)},{classes[int(np.argmax(p))]}," + ",".join(f"{p[i]:.6f}" for i in order))
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def predict(input_path, out, model=None, overwrite: bool = False) -> dict:
    """Classify ``input_path`` into ``out/classes.csv``; nothing is written on a refused input."""
    out = Path(out)
    dest = out / "classes.csv"
    if dest.exists() and not overwrite:
        raise UserError(f"{dest}: already exists (use --overwrite to replace it)")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    clf, probs, tids = classify_input(input_path, model)
    out.mkdir(parents=True, exist_ok=True)
    write_classes(dest, probs, tids, clf.classes)
    counts = {c: int(np.sum(probs.argmax(axis=1) == i)) for i, c in enumerate(clf.classes)}
    return {"n": len(probs), "path": dest, "counts": counts, "model": clf.name}
