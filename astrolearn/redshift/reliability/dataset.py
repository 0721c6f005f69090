"""Reliability data: the engine's estimates and PDFs, truth, and training shards.

:class:`Estimates` holds what the classifier reads for a set of spectra: the engine's table
(``redshifts.csv`` columns, input order), the log PDFs (an HDF5 dataset, read in chunks) and
their grid, and the truth when the spectra were simulated.

Training shards (``RUN_DIR/data/shard-*.h5``, :mod:`astrolearn.io.shards` layout) copy what
training needs from the estimates so that any labelling scheme can be trained from them:

- ``log_pdf`` (n, Z) float32 and ``descriptors`` (n, 13) (the gradient-boosting baseline's input);
- ``params``: ``z_true``, ``z``, ``z_proba``, ``cand_1`` ... ``cand_K`` (all candidate redshifts,
  the best first) and the other truth columns (line fluxes, S/N);
- attributes: ``domain = "redshift-reliability"``, ``grid`` (JSON), ``source``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import UserError
from ...io.shards import SHARD_PATTERN, read_meta, write_shard
from ..pdf import ZGrid
from .classifier import check_grid, grid_from_meta
from .descriptors import zpdf_descriptors
from .labels import LabelScheme

DOMAIN = "redshift-reliability"


@dataclass
class Estimates:
    """Redshift estimates of N spectra with their PDFs.

    Attributes
    ----------
    table : dict of str to ndarray
        Per-spectrum engine outputs in input order: ``z`` and ``z_proba``, and ``targetid``,
        ``z_err`` when known.
    log_pdf : array-like, shape (N, Z)
        Normalised log PDFs (ndarray or :class:`RowStack`, read in slices).
    grid : ZGrid
    source : str
        Where they come from (for messages).
    candidates : ndarray, shape (N, K)
        Candidate redshifts, the best first (NaN where fewer).
    truth : dict of str to ndarray
        Truth columns (empty for real data); ``truth["z_true"]`` is the true redshift.
    summary_csv : Path or None
        The engine's ``redshifts.csv`` for these estimates, when there is one.
    """

    table: dict
    log_pdf: object
    grid: ZGrid
    source: str
    candidates: np.ndarray
    truth: dict = field(default_factory=dict)
    summary_csv: Path | None = None

    def __len__(self) -> int:
        return len(self.log_pdf)

    @property
    def z_true(self) -> np.ndarray:
        """The true redshifts (``UserError`` for real data)."""
        if "z_true" not in self.truth:
            raise UserError(f"{self.source}: no true redshift (truth column z); training and evaluation "
                            "need estimates of simulated spectra")
        return self.truth["z_true"]

    def labels(self, scheme: LabelScheme) -> np.ndarray:
        """Class labels of the estimates under ``scheme`` (needs the truth)."""
        return scheme.labels(self.table["z"], self.z_true, self.candidates[:, 1:])


def from_arrays(log_pdf, grid: ZGrid, table: dict, candidates=None, truth: dict | None = None,
                source: str = "arrays") -> Estimates:
    """Estimates from in-memory arrays (``table`` needs ``z``; ``truth`` may hold ``z_true``)."""
    n = len(log_pdf)
    if np.shape(log_pdf)[1] != grid.size:
        raise UserError(f"{source}: PDFs of {np.shape(log_pdf)[1]} points for a grid of {grid.size}")
    for name, col in {**table, **(truth or {})}.items():
        if len(col) != n:
            raise UserError(f"{source}: column {name!r} has {len(col)} rows for {n} PDFs")
    cand = np.asarray(table["z"], dtype=np.float64)[:, None] if candidates is None else np.asarray(candidates, float)
    return Estimates(dict(table), log_pdf, grid, source, cand, dict(truth or {}))


# ---- training shards ------------------------------------------------------------------------
class SchemeTargets:
    """Target function of :class:`~astrolearn.training.ShardDataset`: labels of a scheme (picklable)."""

    def __init__(self, scheme: LabelScheme):
        self.scheme = scheme

    def __call__(self, params: np.ndarray, names: list) -> np.ndarray:
        col = {name: params[:, i] for i, name in enumerate(names)}
        secondary = np.stack([col[n] for n in candidate_columns(names)[1:]], axis=1) if \
            len(candidate_columns(names)) > 1 else None
        return self.scheme.labels(col["z"], col["z_true"], secondary)


def candidate_columns(names) -> list[str]:
    """``cand_1``, ``cand_2``, ... among ``names``, in order."""
    out, k = [], 1
    while f"cand_{k}" in names:
        out.append(f"cand_{k}")
        k += 1
    return out


def write_training_shards(estimates: list[Estimates], out_dir, shard_size: int = 4096, progress=None) -> list[Path]:
    """Copy estimates with truth into training shards (resumable: complete shards are kept).

    Parameters
    ----------
    estimates : list of Estimates
        Simulated spectra (with truth), all on the same grid.
    out_dir : path-like
        Shard directory.
    shard_size : int
        PDFs per shard.
    progress : callable, optional
        ``progress(n)`` after each shard of ``n`` PDFs.

    Returns
    -------
    list of Path
        The shard files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for e in estimates[1:]:
        check_grid(estimates[0].grid, e.grid, e.source)
    truth = sorted(set.intersection(*(set(e.truth) for e in estimates)))
    n_cand = max(e.candidates.shape[1] for e in estimates)
    pieces = [(e, i0, min(i0 + shard_size, len(e))) for e in estimates for i0 in range(0, len(e), shard_size)]
    paths = []
    for index, (e, i0, i1) in enumerate(pieces):
        path = out_dir / SHARD_PATTERN.format(index)
        paths.append(path)
        source = f"{e.source}[{i0}:{i1}]"
        if not (path.is_file() and read_meta(path).get("source") == source):
            write_training_shard(path, e, i0, i1, source, n_cand, truth)
        if progress:
            progress(i1 - i0)
    return paths


def write_training_shard(path, e: Estimates, i0: int, i1: int, source: str, n_candidates: int, truth) -> Path:
    """Write rows ``i0:i1`` of ``e`` as one training shard (layout in the module documentation).

    ``truth`` names the truth columns to keep (``z_true`` is always kept, first).
    """
    log_pdf = np.asarray(e.log_pdf[i0:i1], dtype=np.float32)
    cand = np.full((i1 - i0, n_candidates), np.nan)
    cand[:, : e.candidates.shape[1]] = e.candidates[i0:i1]
    others = [n for n in truth if n != "z_true"]
    names = ["z_true", "z", "z_proba", *[f"cand_{k + 1}" for k in range(n_candidates)], *others]
    params = np.column_stack([e.z_true[i0:i1], e.table["z"][i0:i1], e.table["z_proba"][i0:i1], cand,
                              *[np.asarray(e.truth[n][i0:i1], dtype=np.float64) for n in others]])
    return write_shard(path, {"log_pdf": log_pdf, "descriptors": zpdf_descriptors(log_pdf, e.grid)}, params, names,
                       {"domain": DOMAIN, "grid": e.grid.meta(), "source": source})


def shard_grid(shards) -> ZGrid:
    """The grid of a list of training shards (all must share it)."""
    grids = [read_meta(p).get("grid") for p in shards]
    if any(g is None for g in grids) or read_meta(shards[0]).get("domain") != DOMAIN:
        raise UserError(f"{shards[0]}: not a redshift-reliability training shard")
    grid = grid_from_meta(grids[0])
    for path, g in zip(shards[1:], grids[1:]):
        check_grid(grid, grid_from_meta(g), path)
    return grid


def read_shard_columns(shards, names=None, arrays=("descriptors",)) -> tuple[dict, dict]:
    """Params columns and small arrays of a list of training shards, concatenated.

    Returns
    -------
    columns : dict of str to ndarray
        The ``params`` columns (all of them when ``names`` is None).
    arrays : dict of str to ndarray
    """
    import h5py

    cols: dict[str, list] = {}
    arrs: dict[str, list] = {a: [] for a in arrays}
    for path in shards:
        with h5py.File(path, "r") as f:
            shard_names = json.loads(f["params"].attrs["names"])
            params = f["params"][...]
            for i, n in enumerate(shard_names):
                if names is None or n in names:
                    cols.setdefault(n, []).append(params[:, i])
            for a in arrays:
                arrs[a].append(f[a][...])
    return {k: np.concatenate(v) for k, v in cols.items()}, {k: np.concatenate(v) for k, v in arrs.items()}


class RowStack:
    """Rows of a 2-D array stored in several HDF5 files, read on demand (``len``, slicing).

    Parameters
    ----------
    paths : sequence of path-like
        HDF5 files, in row order.
    key : str
        Name of the (n_i, Z) dataset in each file.
    """

    def __init__(self, paths, key: str):
        import h5py

        self.paths, self.key = [Path(p) for p in paths], key
        counts, widths = [], set()
        for p in self.paths:
            with h5py.File(p, "r") as f:
                counts.append(f[key].shape[0])
                widths.add(f[key].shape[1])
        if len(widths) != 1:
            raise UserError(f"{key!r} has different widths across {self.paths[0].parent}")
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        self.shape = (int(self.offsets[-1]), widths.pop())

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        import h5py

        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("RowStack supports contiguous slices only")
        start, stop, _ = index.indices(len(self))
        parts = []
        for i, p in enumerate(self.paths):
            lo, hi = max(start, self.offsets[i]), min(stop, self.offsets[i + 1])
            if lo < hi:
                with h5py.File(p, "r") as f:
                    parts.append(f[self.key][lo - self.offsets[i] : hi - self.offsets[i]])
        return np.concatenate(parts) if parts else np.zeros((0, self.shape[1]), dtype=np.float32)


def estimates_from_shards(shards, source: str | None = None) -> Estimates:
    """Estimates (with truth) read back from training shards (e.g. a held-out test set)."""
    shards = [Path(p) for p in shards]
    grid = shard_grid(shards)
    columns, _ = read_shard_columns(shards, arrays=())
    cand = np.stack([columns.pop(n) for n in candidate_columns(list(columns))], axis=1)
    table = {"z": columns.pop("z"), "z_proba": columns.pop("z_proba")}
    if "targetid" in columns:
        table["targetid"] = columns["targetid"].astype(np.int64)
    return Estimates(table, RowStack(shards, "log_pdf"), grid, source or str(shards[0].parent), cand, columns)


def _reliability_shards(path: Path) -> list[Path] | None:
    """The reliability shards at ``path`` (a shard or a directory of shards), or None."""
    shards = [path] if path.is_file() and path.suffix == ".h5" else sorted(path.glob("shard-*.h5")) if path.is_dir() else []
    if shards and read_meta(shards[0]).get("domain") == DOMAIN:
        return shards
    return None


def open_estimates(path) -> Estimates:
    """Estimates from an estimate output directory, or from reliability shards."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    shards = _reliability_shards(path)
    if shards is not None:
        return estimates_from_shards(shards, str(path))
    return read_engine_output(path)


def open_training_data(paths, data_dir, progress: bool = False) -> list[Path]:
    """Training shards for ``paths``: reliability shards as they are, estimate outputs copied.

    Estimate outputs (simulated spectra) are copied into shards under ``data_dir`` (resumable:
    a rerun keeps the complete ones).
    """
    shards, estimates = [], []
    for p in map(Path, paths):
        found = _reliability_shards(p)
        if found is not None:
            shards.extend(found)
        else:
            estimates.append(open_estimates(p))
    if estimates:
        total = sum(len(e) for e in estimates)
        done = [0]

        def report(n):
            done[0] += n
            print(f"\rtraining shards: {done[0]}/{total} PDFs", end="" if done[0] < total else "\n", flush=True)

        shards.extend(write_training_shards(estimates, data_dir, progress=report if progress else None))
    return shards


def read_engine_output(path) -> Estimates:
    """Estimates from an ``astrolearn redshift estimate`` output directory (or one ``zpdf-*.h5``).

    The table is ``redshifts.csv`` when the directory has it (all its columns, as text, so that
    :func:`~astrolearn.redshift.reliability.predict.write_reliability` copies them unchanged),
    else the per-chunk ``targetid``, ``z``, ``z_err``, ``z_proba``. The truth is the chunks'
    ``params`` table, its ``z`` renamed ``z_true``.
    """
    import h5py

    from ..io import CHUNK_PATTERN

    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob(CHUNK_PATTERN.replace("{:05d}", "*")))
    if not files:
        raise UserError(f"{path}: neither an estimate output (zpdf-*.h5) nor reliability shards")
    parts = []
    for f in files:
        try:
            with h5py.File(f, "r") as h:
                if h.attrs.get("kind") != "zpdf" or "log_pdf" not in h:
                    raise UserError(f"{f}: not a redshift estimate file (no log_pdf)")
                part = {k: h[k][...] for k in ("targetid", "z", "z_err", "z_proba", "cand_z")}
                part["first_row"] = int(h.attrs["first_row"])
                part["grid"] = {k: h.attrs[k] for k in ("zmin", "zmax", "zstep", "sampling")}
                if "params" in h:
                    part["truth"] = dict(zip(json.loads(h["params"].attrs["names"]), h["params"][...].T))
        except OSError as exc:
            raise UserError(f"{f}: not a readable HDF5 file ({exc.__class__.__name__})") from None
        part["path"] = f
        parts.append(part)
    parts.sort(key=lambda p: p["first_row"])
    grid = grid_from_meta({k: (v.decode() if isinstance(v, bytes) else v) for k, v in parts[0]["grid"].items()})
    for p in parts[1:]:
        check_grid(grid, grid_from_meta(p["grid"]), p["path"])
    table = {k: np.concatenate([p[k] for p in parts]) for k in ("targetid", "z", "z_err", "z_proba")}
    truth = {}
    if all("truth" in p for p in parts):
        names = [n for n in parts[0]["truth"] if all(n in p["truth"] for p in parts)]
        truth = {("z_true" if n == "z" else n): np.concatenate([p["truth"][n] for p in parts]) for n in names}
    width = max(p["cand_z"].shape[1] for p in parts)
    cand = np.concatenate([np.pad(p["cand_z"], ((0, 0), (0, width - p["cand_z"].shape[1])), constant_values=np.nan)
                           for p in parts])
    summary = path / "redshifts.csv" if path.is_dir() else None
    return Estimates(table, RowStack([p["path"] for p in parts], "log_pdf"), grid, str(path), cand, truth,
                     summary if summary is not None and summary.is_file() else None)
