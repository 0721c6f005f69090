"""``reliability.csv``: the engine's table with the classifier's probabilities, and ``run``.

``reliability.csv`` has one row per spectrum, in input order: the columns of the engine's
``redshifts.csv`` copied unchanged, then ``p_success`` (3-class models: then ``p_confusion`` and
``p_failure``), the calibrated class probabilities.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ...errors import UserError
from ...io.shards import atomic_write, check_new_output
from ...io.tables import write_csv
from .classifier import ReliabilityModel
from .dataset import Estimates, read_engine_output

OUTPUT_FILE = "reliability.csv"


def write_reliability(model: ReliabilityModel, estimates: Estimates, out, overwrite: bool = False) -> Path:
    """Classify ``estimates`` and write ``out`` (see the module documentation).

    Raises
    ------
    UserError
        When the PDFs are on another grid than the model's, when ``out`` exists (without
        ``overwrite``), or when ``redshifts.csv`` does not match the PDFs row for row.
    """
    out = check_new_output(out, overwrite)
    probs = model.predict(estimates.log_pdf, estimates.grid, estimates.source)
    extra = model.columns(probs)
    if estimates.summary_csv is None:
        return write_csv(out, {**estimates.table, **extra}, overwrite=overwrite)
    with open(estimates.summary_csv, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    if len(body) != len(probs):
        raise UserError(f"{estimates.summary_csv}: {len(body)} rows for {len(probs)} PDFs; rerun the estimate")
    if "targetid" in header:
        k = header.index("targetid")
        # int() of the text: DESI ids (~4e16) do not survive a float round trip
        ids = np.array([int(r[k]) if r[k].lstrip("+-").isdigit() else int(float(r[k])) for r in body])
        if not np.array_equal(ids, np.asarray(estimates.table["targetid"], dtype=np.int64)):
            raise UserError(f"{estimates.summary_csv}: target ids differ from the PDF files'; rerun the estimate")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header + list(extra))
        for i, row in enumerate(body):
            writer.writerow(row + [f"{float(v[i]):.6g}" for v in extra.values()])
    return out


def estimate_and_classify(spectra, model: ReliabilityModel, out_dir, overwrite: bool = False,
                          resolution: float | None = None, workers: int | None = None, progress: bool = True) -> Path:
    """``astrolearn redshift estimate`` on the model's grid, then :func:`write_reliability`.

    Parameters
    ----------
    spectra : path-like
        Any input of the estimate (text, FITS batch, DESI coadd, shards).
    model : ReliabilityModel
        Its grid is the estimate's grid, so the PDFs always suit it.
    out_dir : path-like
        Estimate outputs and ``reliability.csv``. An interrupted run resumes; a complete
        estimate of the same input is reused.
    overwrite : bool
        Replace previous outputs.
    resolution : float, optional
        Resolving power overriding the input's (see the estimate).
    workers : int, optional
        Engine worker threads.
    progress : bool
        Progress bar of the estimate.

    Returns
    -------
    Path
        ``out_dir/reliability.csv``.
    """
    from ..engine import EngineConfig
    from ..estimate import estimate

    out_dir = Path(out_dir)
    target = check_new_output(out_dir / OUTPUT_FILE, overwrite)
    if overwrite or not _complete_estimate_of(out_dir, spectra, model.grid.meta()):
        estimate(spectra, out_dir, EngineConfig(grid=model.grid, workers=workers), resolution=resolution,
                 overwrite=overwrite, progress=progress)
    return write_reliability(model, read_engine_output(out_dir), target, overwrite=overwrite)


def _complete_estimate_of(out_dir: Path, spectra, grid: dict) -> bool:
    """Whether ``out_dir`` holds a finished estimate of ``spectra`` on ``grid``."""
    manifest = out_dir / "run.json"
    if not (manifest.is_file() and (out_dir / "redshifts.csv").is_file()):
        return False
    try:
        done = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return done.get("input") == str(Path(spectra).resolve()) and done.get("engine", {}).get("grid") == grid
