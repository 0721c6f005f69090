"""Batch redshift estimation of an input file or data set (resumable, atomic outputs).

The input is split into chunks (:func:`astrolearn.redshift.io.open_input`); each chunk's
results go to ``zpdf-NNNNN.h5`` written atomically, so an interrupted run resumes with the
missing chunks when rerun with the same settings (``run.json``). ``redshifts.csv`` and
``redshifts.fits`` are written last. A fresh run that fails on bad input removes what it wrote.
With several chunks and ``workers > 1`` (CPU), chunks are processed by that many worker
processes, each with a single-threaded engine (no GIL or thread oversubscription); a single
chunk uses the engine's worker threads instead.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import UserError
from ..io.shards import atomic_write
from . import io as rio
from .calibration import load_calibration
from .engine import EngineConfig, RedshiftEngine, default_workers, lsf_sigma_from_resolution

#: Default resolving power when an input does not define its line-spread function.
DEFAULT_R_NIR = 450.0  # NISP-like (median wavelength > 9000 A)
DEFAULT_R_OPT = 3000.0


def _digest(*arrays) -> str:
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()


_ENGINES: dict = {}


def _process_chunk(i, input_path, chunk_size, out, config, resolution, log_prior, save_chi2, chunks=None) -> int:
    """Estimate chunk ``i`` of the input and write its file (also run in worker processes)."""
    if chunks is None:
        chunks = rio.open_input(input_path, chunk_size)
    ch = chunks[i]
    sp = ch.load()
    lsf = sp.lsf_sigma
    if resolution is not None:
        lsf = lsf_sigma_from_resolution(sp.wave, resolution)
    elif lsf is None:
        r = DEFAULT_R_NIR if np.median(sp.wave) > 9000 else DEFAULT_R_OPT
        lsf = lsf_sigma_from_resolution(sp.wave, r)
    # One engine per process and setting: the same pixels with another grid, template set or prior
    # (a second run in a notebook or the demo) must not reuse the previous engine.
    key = (_digest(sp.wave, lsf, sp.pixel_width if sp.pixel_width is not None else [],
                   log_prior if log_prior is not None else []), json.dumps(config.to_dict(), sort_keys=True))
    if key not in _ENGINES:
        _ENGINES.clear()
        _ENGINES[key] = RedshiftEngine(sp.wave, lsf, config, pixel_width=sp.pixel_width, log_prior=log_prior)
    eng = _ENGINES[key]
    res = eng.run(sp.flux, sp.ivar)
    rio.write_chunk(out / rio.CHUNK_PATTERN.format(i), res, sp, ch.first_row, eng.grid,
                    {"engine": config.to_dict(), "source": str(ch.source), "chunk_index": i,
                     "stride": eng.stride, "resolution_median": float(np.median(sp.wave / lsf) / 2.3548),
                     "flux_unit": rio.FLUX_UNIT}, save_chi2=save_chi2)
    return len(sp.flux)


def with_calibrated_proba(cols: dict, calibration) -> dict:
    """The summary columns with ``z_proba_cal`` = ``calibration(z_proba)`` inserted after ``status``."""
    out = {}
    for k, v in cols.items():
        out[k] = v
        if k == "status":
            out["z_proba_cal"] = calibration(cols["z_proba"])
    return out


def _our_files(out: Path) -> list[Path]:
    return (sorted(out.glob("zpdf-*.h5")) + [out / n for n in ("run.json", "redshifts.csv", "redshifts.fits")])


def estimate(input_path, out, config: EngineConfig | None = None, resolution: float | None = None,
             log_prior=None, prior_desc=None, chunk_size: int = 1000, overwrite: bool = False,
             progress: bool = True, save_chi2: bool = False, calibration=None) -> dict:
    """Estimate redshifts of every spectrum of ``input_path`` into directory ``out``.

    Parameters
    ----------
    input_path : path-like
        Text spectrum, FITS batch, DESI coadd, survey spectrum file, shard or directory of shards.
    out : path-like
        Output directory (see :mod:`astrolearn.redshift.io`).
    config : EngineConfig
    resolution : float, optional
        Resolving power overriding the input's LSF (or the defaults 450 for near-infrared,
        3000 for optical inputs without one).
    log_prior : ndarray, optional
        log prior on the grid.
    prior_desc : str, optional
        Description of the prior (stored in ``run.json``).
    chunk_size : int
        Spectra per output file.
    overwrite : bool
        Replace an existing output directory's results.
    progress : bool
        tqdm progress bar.
    save_chi2 : bool
        Also store chi2(z) and the mask of exactly computed grid points.
    calibration : ProbaCalibration, optional
        Map of ``z_proba`` to the ``z_proba_cal`` column of ``redshifts.csv`` (default: the
        shipped one, :func:`astrolearn.redshift.calibration.load_calibration`).

    Returns
    -------
    dict
        ``n`` spectra, ``seconds``, ``spectra_per_s`` (this invocation), ``summary`` path.
    """
    from tqdm import tqdm

    config = config or EngineConfig()
    calibration = calibration or load_calibration()
    if chunk_size < 1:
        raise UserError("--chunk-size must be >= 1")
    input_path = Path(input_path)
    chunks = rio.open_input(input_path, chunk_size)
    out = Path(out)
    desc = {"kind": "astrolearn.redshift.estimate", "input": str(input_path.resolve()),
            "engine": config.to_dict(), "resolution": resolution, "prior": prior_desc,
            "chunk_size": int(chunk_size), "n_chunks": len(chunks), "save_chi2": bool(save_chi2),
            "n_spectra": int(sum(c.count for c in chunks))}
    manifest = out / "run.json"
    created = False
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if overwrite:
            for p in _our_files(out):
                if p.exists():
                    p.unlink()
        elif not manifest.exists():
            raise UserError(f"{out}: already exists (use --overwrite to replace it)")
        else:
            try:
                old = json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError):
                raise UserError(f"{out}: unreadable run.json (use --overwrite to replace it)") from None
            if old != json.loads(json.dumps(desc)):
                raise UserError(f"{out}: holds results of other settings or input (use --overwrite to replace them)")
            if (out / "redshifts.csv").exists():
                raise UserError(f"{out}: already exists and is complete (use --overwrite to replace it)")
    else:
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
    if not manifest.exists():
        with atomic_write(manifest) as tmp:
            tmp.write_text(json.dumps(desc, indent=1))
    t0 = time.perf_counter()
    done_now = 0
    try:
        todo = [i for i in range(len(chunks)) if not (out / rio.CHUNK_PATTERN.format(i)).exists()]
        bar = tqdm(total=sum(chunks[i].count for i in todo), desc="estimate", unit="spec", disable=not progress)
        workers = int(config.workers) if config.workers else default_workers()
        args = (input_path, chunk_size, out, config, resolution, log_prior, save_chi2)
        if workers > 1 and len(todo) > 1 and str(config.device) == "cpu":
            # several chunks: one process per CPU, each running a single-threaded engine
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            from dataclasses import replace

            args = (input_path, chunk_size, out, replace(config, workers=1), resolution, log_prior, save_chi2)
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx) as ex:
                futures = [ex.submit(_process_chunk, i, *args) for i in todo]
                for fut in as_completed(futures):
                    n = fut.result()
                    done_now += n
                    bar.update(n)
        else:
            for i in todo:
                n = _process_chunk(i, *args, chunks=chunks)
                done_now += n
                bar.update(n)
        bar.close()
        parts = [rio.read_chunk(out / rio.CHUNK_PATTERN.format(i), skip=("log_pdf", "chi2", "exact", "zgrid"))
                 for i in range(len(chunks))]
        csv, _ = rio.write_summary(out, with_calibrated_proba(rio.summary_table(parts), calibration))
    except UserError:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    dt = time.perf_counter() - t0
    return {"n": done_now, "seconds": dt, "spectra_per_s": done_now / dt if dt > 0 else float("nan"),
            "summary": csv, "version": __version__}
