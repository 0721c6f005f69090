"""Names and units of the PSF outputs, and error statistics of estimates against the truth.

:data:`PARAMETERS` is the one table of output columns: every report, plot and ``units:`` mapping
takes its symbols and units from it (``docs/parameters.md`` explains each column). The CSV
columns keep maoppy's names (``bck``, ``amp``); reports show them as ``C (bck)``, ``A (amp)``.
"""

from __future__ import annotations

import numpy as np

#: Output column -> (symbol in the literature, unit, meaning). Units in plain ASCII, as CSV
#: headers, YAML and terminals show them; the PSD parameters are at the image wavelength except r0.
PARAMETERS = {
    "r0": ("r0", "m", "Fried parameter at 500 nm"),
    "bck": ("C", "rad^2 m^2", "constant phase PSD level in the AO-corrected area, at the image wavelength"),
    "amp": ("A", "rad^2", "phase variance of the Moffat part of the corrected PSD, at the image wavelength"),
    "alpha": ("alpha", "1/m", "Moffat width (spatial frequency)"),
    "ratio": ("ratio", "", "Moffat elongation sqrt(ax/ay)"),
    "theta": ("theta", "rad", "Moffat orientation"),
    "beta": ("beta", "", "Moffat power law"),
    "flux": ("flux", "e-", "total flux of the PSF"),
    "background": ("background", "e-/px", "constant background level per pixel"),
    "dx": ("dx", "px", "shift of the PSF centre from pixel npix//2 along x (columns)"),
    "dy": ("dy", "px", "shift of the PSF centre from pixel npix//2 along y (rows)"),
    "x": ("x", "px", "PSF centre in the input file, x (column), 0-based"),
    "y": ("y", "px", "PSF centre in the input file, y (row), 0-based"),
    "chi2_red": ("chi2_red", "", "reduced chi^2 of the fit"),
    "niter": ("niter", "", "Levenberg-Marquardt iterations"),
    "status": ("status", "", "converged, iteration_cap or at_bound:<parameters>"),
    "index": ("index", "", "frame index in the input"),
}
#: Static modes ``stat_<i>``: wavefront coefficient of mode i of the instrument's static basis.
STATIC = ("nm", "static aberration: coefficient of mode i of the static basis (wavefront)")

#: Parameters reported as relative errors [%]; the others (static modes, shifts) in their units.
RELATIVE = ("r0", "bck", "amp", "alpha", "ratio", "beta")


def _base(name: str) -> str:
    return name[: -len("_err")] if name.endswith("_err") else name


def parameter_unit(name: str) -> str:
    """Unit of an output column (``_err`` columns: that of their parameter; '' if dimensionless)."""
    base = _base(name)
    if base.startswith("stat_"):
        return STATIC[0]
    return PARAMETERS[base][1] if base in PARAMETERS else ""


def parameter_symbol(name: str) -> str:
    """Symbol of a column in reports: ``C (bck)`` where it differs from the CSV name, else the name."""
    base = _base(name)
    symbol = PARAMETERS[base][0] if base in PARAMETERS else base
    text = base if symbol == base else f"{symbol} ({base})"
    return text + " 1-sigma error" if name.endswith("_err") else text


def parameter_label(name: str) -> str:
    """Axis label of a column: symbol and unit, e.g. ``C (bck) [rad^2 m^2]``, ``beta [-]``."""
    unit = parameter_unit(name)
    return f"{parameter_symbol(name)} [{unit or '-'}]"


def column_units(names) -> dict[str, str]:
    """``{column: unit}`` of a table's columns ('-' for dimensionless), for the ``units:`` mapping."""
    return {n: parameter_unit(n) or "-" for n in names}


def parameter_rows(names) -> list[dict]:
    """Rows (column, symbol, unit, meaning) describing ``names``, for a report's parameter table."""
    rows = []
    for n in names:
        base = _base(n)
        meaning = STATIC[1].replace("mode i", f"mode {base[5:]}") if base.startswith("stat_") else \
            PARAMETERS.get(base, ("", "", ""))[2]
        rows.append({"column": n, "symbol": PARAMETERS.get(base, (base,))[0], "unit": parameter_unit(n) or "-",
                     "meaning": meaning})
    return rows


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
        "unit": "%" if name in RELATIVE else parameter_unit(name),
        "median": float(np.median(err[ok])) if ok.any() else np.nan,
        "p68": float(np.percentile(err[ok], 68)) if ok.any() else np.nan,
        "p90": float(np.percentile(err[ok], 90)) if ok.any() else np.nan,
        "mean": float(np.mean(err[ok])) if ok.any() else np.nan,
        "pearson_r": float(r),
        "n": int(ok.sum()),
    }


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A Markdown table of dict rows (floats with 4 significant digits; '-' for NaN: no value)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])
    fmt = lambda v: ("-" if np.isnan(v) else f"{v:.4g}") if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
