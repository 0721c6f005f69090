"""Result tables: CSV written atomically, with the resolved run configuration beside them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import yaml

from .shards import atomic_write, check_new_output


def write_csv(path, columns: dict, overwrite: bool = False) -> Path:
    """Write columns (name -> 1D array) as CSV; refuses to replace a file unless ``overwrite``."""
    path = check_new_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(columns)
    n = len(next(iter(columns.values()))) if columns else 0
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        for i in range(n):
            writer.writerow([_fmt(columns[c][i]) for c in names])
    return path


def _fmt(value):
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.10g}"
    if isinstance(value, np.integer):
        return int(value)
    return value


def read_csv(path) -> dict[str, np.ndarray]:
    """Read a CSV written by :func:`write_csv` (numeric columns as float arrays)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    out = {}
    for j, name in enumerate(header):
        values = [r[j] for r in body]
        try:
            out[name] = np.array([float(v) for v in values])
        except ValueError:
            out[name] = np.array(values)
    return out


def write_run_config(path, config: dict, overwrite: bool = True) -> Path:
    """Write the fully resolved configuration of a run (YAML) next to its outputs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
