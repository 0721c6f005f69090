"""A torch ``Dataset`` over HDF5 shards (see :mod:`astrolearn.io.shards`), read lazily.

Only the small ``params`` tables are read up front (to compute the targets); input arrays are read
one sample at a time from HDF5 files opened on first use in each process. h5py file handles
cannot be shared between processes, so they are never pickled (spawned data-loader workers)
and are reopened after a fork.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UserError
from ..io.shards import list_shards

#: ``target_fn(params, names)``: the shard's (N, P) truth table and its column names to the
#: targets, (N,) integer class labels or (N,) / (N, T) float regression targets.
TargetFn = Callable[[np.ndarray, list], np.ndarray]


def select_columns(*columns: str) -> TargetFn:
    """Target function taking the named ``params`` columns as regression targets."""

    def targets(params, names):
        missing = [c for c in columns if c not in names]
        if missing:
            raise UserError(f"no column {', '.join(missing)} in params (has {', '.join(names)})")
        return params[:, [names.index(c) for c in columns]]

    return targets


class ShardDataset(Dataset):
    """Samples ``(x, y)`` (or ``x`` without a target function) of a list of shards.

    Parameters
    ----------
    shards : path-like or sequence of path-like
        Shard files, or a data set directory (see :func:`astrolearn.io.shards.list_shards`).
    inputs : str or sequence of str
        Name(s) of the shard arrays the network reads (``"images"``; ``["flux", "noise"]``).
    target_fn : callable, optional
        ``target_fn(params, names)`` (see :data:`TargetFn`), called once per shard.
    transform : callable, optional
        Turns one sample's input (the array of ``inputs``, or a dict of arrays when several are
        named) into a channels-first array: ``(C, L)`` or ``(C, H, W)``. Without it, the array
        gets a channel axis, or the named arrays are stacked as channels.

    Attributes
    ----------
    targets : ndarray or None
        All targets, concatenated over shards: int64 (N,) labels or float32 (N, T) values.
    """

    def __init__(self, shards, inputs: str | Sequence[str], target_fn: TargetFn | None = None,
                 transform: Callable | None = None):
        self.shards = list_shards(shards) if isinstance(shards, (str, os.PathLike)) else [Path(p) for p in shards]
        if not self.shards:
            raise UserError("no shards to read")
        self.inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        self.transform = transform
        counts, targets = [], []
        for path in self.shards:
            with _open(path) as f:
                n = _check_layout(f, path, self.inputs)
                if target_fn is not None:
                    names = json.loads(f["params"].attrs["names"])
                    targets.append(_as_targets(target_fn(f["params"][...], names), n, path))
            counts.append(n)
        self.targets = np.concatenate(targets) if targets else None
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self._files: dict[int, h5py.File] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        shard = int(np.searchsorted(self._offsets, index, side="right")) - 1
        row = index - int(self._offsets[shard])
        f = self._file(shard)
        arrays = {key: f[key][row] for key in self.inputs}
        if self.transform is None:
            x = np.stack([arrays[key] for key in self.inputs])
        else:
            x = self.transform(arrays[self.inputs[0]] if len(self.inputs) == 1 else arrays)
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        if self.targets is None:
            return x
        return x, torch.as_tensor(self.targets[index])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one transformed input sample, channels first."""
        item = self[0]
        return tuple((item[0] if isinstance(item, tuple) else item).shape)

    def close(self):
        """Close the HDF5 files opened by this process (they reopen on the next read)."""
        for f in self._files.values():
            f.close()
        self._files = {}

    def _file(self, shard: int) -> h5py.File:
        if self._pid != os.getpid():
            # A forked worker inherited its parent's handles: HDF5 state is not fork-safe.
            self._files, self._pid = {}, os.getpid()
        if shard not in self._files:
            self._files[shard] = _open(self.shards[shard])
        return self._files[shard]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_files"] = {}
        return state


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: not a readable HDF5 file ({exc.__class__.__name__})") from None


def _check_layout(f: h5py.File, path: Path, inputs: tuple[str, ...]) -> int:
    """Number of samples of shard ``f``, after checking that it has ``params`` and ``inputs``."""
    if "params" not in f or "names" not in f["params"].attrs:
        raise UserError(f"{path}: not an astrolearn shard (no 'params' table with column names)")
    n = len(f["params"])
    for key in inputs:
        if key not in f:
            raise UserError(f"{path}: no array {key!r} (has {', '.join(f.keys())})")
        if len(f[key]) != n:
            raise UserError(f"{path}: array {key!r} has {len(f[key])} samples, params has {n}")
    return n


def _as_targets(values, n: int, path: Path) -> np.ndarray:
    values = np.asarray(values)
    if len(values) != n:
        raise ValueError(f"{path}: target function returned {len(values)} rows for {n} samples")
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64).reshape(n)
    return values.astype(np.float32).reshape(n, -1)
