"""Timing harness of the benchmarks: the same work for every method, warmed up, repeated, interleaved.

Each method is a callable doing one unit of work (e.g. rendering the same 256 PSFs). Every method
is called ``warmup`` times untimed, then ``repeats`` rounds each call every method once, in turn,
so that the machine's load (a shared VM) weighs on all of them alike. Threads are set for both
sides: torch's intra-op threads and, through threadpoolctl, the BLAS/OpenMP pools that numpy and
scipy use. Each row gives the median and range (min-max) of the seconds per call, the rate, and
the ratio of medians to the reference method.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable


@contextlib.contextmanager
def threads(n: int):
    """Run the block with ``n`` threads for torch and for the native pools of numpy/scipy."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(before)


def machine() -> str:
    """CPU model, cores, torch version and current load average, for the header of a result."""
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, load average {load}"


def commit() -> str:
    """The repository's commit (with ``+dirty`` when the working tree differs)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]  # the repository's, wherever the script is run from
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def compare(methods: dict[str, Callable[[], object]], units: int, reference: str | None = None,
            repeats: int = 5, warmup: int = 1) -> list[dict]:
    """Time ``methods`` on the same work; returns one row per method.

    Parameters
    ----------
    methods : dict of str to callable
        Label -> a call doing the whole work once.
    units : int
        Items processed by one call (PSFs, spectra): rates are ``units / seconds``.
    reference : str, optional
        Label whose median the ratios divide (default: the first method).
    repeats, warmup : int
        Timed rounds (each method once per round, interleaved) and untimed calls first.
    """
    if repeats < 5:
        raise ValueError("a timing is the median of at least 5 repeats")
    for call in methods.values():
        for _ in range(warmup):
            call()
    seconds: dict[str, list[float]] = {label: [] for label in methods}
    for _ in range(repeats):
        for label, call in methods.items():
            t0 = time.perf_counter()
            call()
            seconds[label].append(time.perf_counter() - t0)
    reference = reference or next(iter(methods))
    ref = statistics.median(seconds[reference])
    rows = []
    for label, s in seconds.items():
        med = statistics.median(s)
        rows.append({"method": label, "median_s": med, "min_s": min(s), "max_s": max(s), "rate": units / med,
                     "rate_range": (units / max(s), units / min(s)), "ratio": ref / med, "repeats": len(s)})
    return rows


def markdown(rows: list[dict], unit: str, reference: str) -> str:
    """The rows of :func:`compare` as a Markdown table (speed ratio against ``reference``)."""
    lines = [f"| method | s per call: median (min-max) | {unit}/s: median (range) | x {reference} |",
             "|---|---|---|---|"]
    for r in rows:
        lo, hi = r["rate_range"]
        lines.append(f"| {r['method']} | {r['median_s']:.4g} ({r['min_s']:.4g}-{r['max_s']:.4g}) | "
                     f"{r['rate']:.4g} ({lo:.4g}-{hi:.4g}) | {r['ratio']:.2f} |")
    return "\n".join(lines)


def code_digest(paths) -> str:
    """A short digest of the files a result measures (``benchmarks/check_results.py`` compares it).

    A directory (a shipped model) stands for every file under it; a missing file changes the digest.
    """
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(paths):
        files = sorted(p for p in (root / path).rglob("*") if p.is_file()) if (root / path).is_dir() else [root / path]
        for file in files:
            h.update(file.relative_to(root).as_posix().encode() + b"\0"
                     + (file.read_bytes() if file.is_file() else b"\0missing"))
    return h.hexdigest()[:12]


def results_marker(name: str, paths) -> str:
    """The line that goes above a result in RESULTS.md: which code it measured, and its digest."""
    return f"<!-- result: {name}; code: {', '.join(sorted(paths))}; digest: {code_digest(paths)} -->"
