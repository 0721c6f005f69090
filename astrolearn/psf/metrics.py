"""Error statistics of PSF parameter estimates against the truth."""

from __future__ import annotations

import numpy as np

#: Parameters reported as relative errors [%]; the others (static modes, shifts) in their units.
RELATIVE = ("r0", "bck", "amp", "alpha", "ratio", "beta")


def parameter_errors(name: str, truth: np.ndarray, estimate: np.ndarray, even: bool = False) -> np.ndarray:
    """Errors of one parameter: relative [%] for PSD parameters, absolute otherwise.

    ``even`` static modes are compared modulo sign (a single in-focus image cannot tell it).
    """
    if name in RELATIVE:
        return 100.0 * np.abs(estimate - truth) / np.abs(truth)
    if even:
        return np.minimum(np.abs(estimate - truth), np.abs(estimate + truth))
    return np.abs(estimate - truth)


def summary_row(name: str, truth: np.ndarray, estimate: np.ndarray, even: bool = False) -> dict:
    """Median, 68th and 90th percentile and mean error, and Pearson r, of one parameter."""
    err = parameter_errors(name, truth, estimate, even)
    ok = np.isfinite(err)
    r = np.corrcoef(truth[ok], estimate[ok])[0, 1] if ok.sum() > 2 and np.std(truth[ok]) > 0 else np.nan
    return {
        "parameter": name,
        "unit": "%" if name in RELATIVE else ("nm" if name.startswith("stat_") else "px" if name in ("dx", "dy") else ""),
        "median": float(np.median(err[ok])) if ok.any() else np.nan,
        "p68": float(np.percentile(err[ok], 68)) if ok.any() else np.nan,
        "p90": float(np.percentile(err[ok], 90)) if ok.any() else np.nan,
        "mean": float(np.mean(err[ok])) if ok.any() else np.nan,
        "pearson_r": float(r),
        "n": int(ok.sum()),
    }


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A Markdown table of dict rows (floats with 4 significant digits)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
