"""HDF5 shards: the storage format of every simulated data set.

A data set is a directory of shard files ``shard-00000.h5``, ``shard-00001.h5``, ... Each holds

- one or more data arrays, first axis = sample (``images`` (N, H, W) float32 for PSFs,
  ``flux``/``noise`` (N, M) for spectra, ...);
- ``params`` (N, P) float64, the truth, with attribute ``names`` (column names);
- file attributes: ``domain``, ``instrument`` (JSON description), ``priors`` and ``noise``
  (JSON), ``seed``, ``shard_index``, ``astrolearn_version``, plus domain-specific JSON entries.

Shards are written atomically (temporary file, then rename) so an interrupted simulation never
leaves a truncated shard: rerunning it regenerates only the missing shards.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from .. import __version__
from ..errors import UserError

SHARD_PATTERN = "shard-{:05d}.h5"
JSON_ATTRS = ("instrument", "priors", "noise", "config")


@dataclass
class Shard:
    """Content of one shard file."""

    path: Path
    arrays: dict[str, np.ndarray]
    params: np.ndarray
    names: list[str]
    meta: dict = field(default_factory=dict)

    def column(self, name: str) -> np.ndarray:
        """Truth column ``name`` (raises ``UserError`` when absent)."""
        if name not in self.names:
            raise UserError(f"{self.path}: no column {name!r} in params (has {', '.join(self.names)})")
        return self.params[:, self.names.index(name)]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only on success."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_new_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse to overwrite an existing output file unless ``overwrite`` is set, and a directory always."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a file name")
    if path.exists() and not overwrite:
        raise UserError(f"{path}: already exists (use --overwrite to replace it)")
    return path


def write_shard(path, arrays: dict[str, np.ndarray], params: np.ndarray, names, meta: dict) -> Path:
    """Write one shard atomically.

    Parameters
    ----------
    path : path-like
        Destination ``.h5`` file.
    arrays : dict of str to ndarray
        Data arrays, all with the same first dimension N.
    params : ndarray, shape (N, P)
        Truth table, stored as float64.
    names : sequence of str
        The P column names of ``params``.
    meta : dict
        File attributes; dicts/lists are stored as JSON strings.
    """
    params = np.asarray(params, dtype=np.float64)
    names = list(names)
    if params.ndim != 2 or params.shape[1] != len(names):
        raise ValueError(f"params shape {params.shape} does not match {len(names)} names")
    for key, value in arrays.items():
        if len(value) != len(params):
            raise ValueError(f"array {key!r} has {len(value)} rows, params has {len(params)}")
    with atomic_write(path) as tmp:
        # track_times=False: the same seed must give byte-identical files.
        with h5py.File(tmp, "w", track_order=True) as f:
            for key, value in arrays.items():
                f.create_dataset(key, data=value, track_times=False)
            dset = f.create_dataset("params", data=params, track_times=False)
            dset.attrs["names"] = json.dumps(names)
            f.attrs["astrolearn_version"] = __version__
            for key, value in meta.items():
                f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, tuple)) else value
    return Path(path)


def _decode_attrs(attrs) -> dict:
    meta = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and (key in JSON_ATTRS or value[:1] in "[{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        elif isinstance(value, np.generic):
            value = value.item()
        meta[key] = value
    return meta


def read_meta(path) -> dict:
    """File attributes of a shard, without reading its arrays."""
    with _open(path) as f:
        return _decode_attrs(f.attrs)


@contextlib.contextmanager
def _open(path):
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path}: not a readable HDF5 file ({exc.__class__.__name__})") from None
    with f:
        yield f


def read_shard(path, instrument: str | None = None, domain: str | None = None) -> Shard:
    """Read a whole shard.

    Parameters
    ----------
    path : path-like
        Shard file.
    instrument : str, optional
        When given, the shard must have been made for this instrument (preset name).
    domain : str, optional
        When given, the shard must belong to this domain (``"psf"``, ``"redshift"``).
    """
    path = Path(path)
    with _open(path) as f:
        meta = _decode_attrs(f.attrs)
        check_shard_meta(path, meta, instrument=instrument, domain=domain)
        if "params" not in f:
            raise UserError(f"{path}: not an astrolearn shard (no 'params' dataset)")
        try:
            names = json.loads(f["params"].attrs["names"])
            params = f["params"][...]
            arrays = {k: f[k][...] for k in f.keys() if k != "params"}
        except (KeyError, OSError, ValueError) as exc:
            raise UserError(f"{path}: corrupt shard ({exc})") from None
    return Shard(path, arrays, params, names, meta)


def check_shard_meta(path, meta: dict, instrument: str | None = None, domain: str | None = None):
    """Raise ``UserError`` when a shard was made for another domain or instrument."""
    if domain is not None and meta.get("domain") not in (None, domain):
        raise UserError(f"{path}: shard of domain {meta.get('domain')!r}, expected {domain!r}")
    if instrument is not None:
        made_for = meta.get("instrument")
        made_for = made_for.get("name") if isinstance(made_for, dict) else made_for
        if made_for != instrument:
            raise UserError(f"{path}: shard made for instrument {made_for!r}, not {instrument!r}")


def list_shards(directory) -> list[Path]:
    """Sorted shard files of a data set directory (a single shard file is accepted too)."""
    directory = Path(directory)
    if directory.is_file():
        return [directory]
    if not directory.is_dir():
        raise UserError(f"{directory}: no such data directory")
    shards = sorted(directory.glob("shard-*.h5"))
    if not shards:
        raise UserError(f"{directory}: no shard-*.h5 files")
    return shards


def data_record(shards) -> list[dict]:
    """Where a training set came from, for a model's metadata: per directory, its shards and seed.

    The seed is that of the simulation behind the directory, followed through the provenance the
    package writes: a directory's ``simulation.json``, else the input of the estimate that made it
    (``run.json``), else the ``source`` its shards name; None where the chain is not on disk.
    """
    record: dict[str, dict] = {}
    for path in map(Path, shards):
        entry = record.setdefault(str(path.parent), {"directory": str(path.parent), "shards": 0, "seed": None})
        entry["shards"] += 1
        if entry["shards"] == 1:
            entry["seed"] = _simulation_seed(path.parent, path)
    return list(record.values())


def _simulation_seed(directory: Path, shard: Path | None = None, depth: int = 3):
    if (directory / "simulation.json").is_file():
        return json.loads((directory / "simulation.json").read_text()).get("seed")
    if depth == 0:
        return None
    if (directory / "run.json").is_file():
        made_from = json.loads((directory / "run.json").read_text()).get("input")
        return _simulation_seed(Path(made_from), None, depth - 1) if made_from else None
    source = Path(str(read_meta(shard).get("source", "")).rsplit("[", 1)[0]) if shard else None
    if not source or source == Path("."):
        return None
    return _simulation_seed(source.parent if source.is_file() else source, None, depth - 1)
