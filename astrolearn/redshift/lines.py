"""Emission-line catalogue (vacuum wavelengths), engine line groups and redshift aliases.

Wavelengths are vacuum, in Angstrom (NIST / SDSS values). The same catalogue drives the
simulator (lines added to the continuum with random ratios) and the redshift engine (one
non-negative amplitude per *group*; the lines of a group keep fixed relative strengths).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .igm import LYMAN_ALPHA

#: Vacuum rest wavelengths [Angstrom] of the lines the package knows about.
LINES: dict[str, float] = {
    "OII3727": 3727.092,
    "OII3730": 3729.875,
    "Hdelta": 4102.892,
    "Hgamma": 4341.692,
    "Hbeta": 4862.683,
    "OIII4960": 4960.295,
    "OIII5008": 5008.240,
    "NII6550": 6549.86,
    "Halpha": 6564.614,
    "NII6585": 6585.27,
    "SII6718": 6718.29,
    "SII6733": 6732.67,
    "SIII9071": 9071.1,
    "SIII9533": 9533.2,
    "Padelta": 10052.13,
    "HeI10833": 10833.31,
    "Pagamma": 10941.09,
    "Pabeta": 12821.59,
    "Paalpha": 18756.13,
}

#: Rest-frame UV lines the engine fits but the NISP simulator does not draw (NISP sees Lyman
#: alpha only at z > 8.9).
UV_LINES: dict[str, float] = {"Lya": LYMAN_ALPHA}

#: Every line the engine knows: rest vacuum wavelength [Angstrom].
CATALOGUE: dict[str, float] = {**UV_LINES, **LINES}


@dataclass(frozen=True)
class LineGroup:
    """One engine model column: lines with fixed relative amplitudes.

    Attributes
    ----------
    name : str
        Group name (used in outputs).
    lines : tuple of str
        Keys of :data:`CATALOGUE`.
    ratios : tuple of float
        Relative integrated fluxes of ``lines`` (same order).
    profile : str
        ``"gauss"``, or ``"asym"``: the skew-normal of Amazed's ASYM profile (scale the line
        sigma, shape :data:`ASYM_ALPHA`), for Lyman alpha, whose blue wing is absorbed by
        neutral hydrogen around the galaxy.
    vdisp : float, optional
        Velocity dispersion [km/s] of the group's lines (default: the engine's).
    """

    name: str
    lines: tuple[str, ...]
    ratios: tuple[float, ...]
    profile: str = "gauss"
    vdisp: float | None = None

    @property
    def wavelengths(self) -> np.ndarray:
        """Rest vacuum wavelengths [Angstrom] of the group's lines."""
        return np.array([CATALOGUE[k] for k in self.lines])


#: Shape parameter of the skew-normal Lyman-alpha profile (Amazed's ASYM line profile).
ASYM_ALPHA = 4.5

#: Default engine line groups (emission). Doublet ratios from atomic physics ([NII], [OIII]:
#: 1:2.95 and 1:2.98; [SIII] 9071:9533 = 1:2.44), typical values ([SII] 6718/6733 = 1.2,
#: [OII] 3730/3727 = 1.3; unresolved at NISP resolution) and case-B recombination for the
#: Balmer lines below Halpha (Hbeta:Hgamma:Hdelta = 1:0.468:0.259) and the Paschen series
#: (Paalpha:Pabeta:Pagamma:Padelta = 2.05:1:0.558:0.343). Tying the weak lines into few groups
#: keeps the number of free amplitudes small, which limits fits of noise at wrong redshifts.
#: Lyman alpha, the line by which optical spectra identify galaxies at z > 2, is broadened by
#: resonant scattering: observed widths of Lyman-alpha emitters span FWHM ~ 150-600 km/s. Two
#: non-negative profiles, FWHM 200 and 590 km/s (skew-normal scales 150 and 450 km/s), span them
#: without a non-linear width fit.
DEFAULT_GROUPS: tuple[LineGroup, ...] = (
    LineGroup("Halpha", ("Halpha",), (1.0,)),
    LineGroup("NII", ("NII6550", "NII6585"), (1.0 / 2.95, 1.0)),
    LineGroup("SII", ("SII6718", "SII6733"), (1.2, 1.0)),
    LineGroup("Balmer", ("Hbeta", "Hgamma", "Hdelta"), (1.0, 0.468, 0.259)),
    LineGroup("OIII", ("OIII4960", "OIII5008"), (1.0 / 2.98, 1.0)),
    LineGroup("OII", ("OII3727", "OII3730"), (1.0, 1.3)),
    LineGroup("SIII", ("SIII9071", "SIII9533"), (1.0 / 2.44, 1.0)),
    LineGroup("HeI10833", ("HeI10833",), (1.0,)),
    LineGroup("Paschen", ("Paalpha", "Pabeta", "Pagamma", "Padelta"), (2.05, 1.0, 0.558, 0.343)),
    LineGroup("Lya", ("Lya",), (1.0,), profile="asym", vdisp=150.0),
    LineGroup("LyaBroad", ("Lya",), (1.0,), profile="asym", vdisp=450.0),
)

#: Emission lines removed from the continuum templates (vacuum, Angstrom): the catalogue
#: above plus other lines present in the kcorrect star-forming templates.
TEMPLATE_EMISSION_LINES: tuple[float, ...] = tuple(sorted(set(LINES.values()) | {
    1025.72, 1034.0, 1215.67, 1240.0, 1335.7, 1397.6, 1549.06, 1640.42, 1663.48, 1750.0,
    1908.73, 2326.0, 2471.0, 2798.75, 3426.85, 3750.15, 3771.70, 3798.98, 3836.47, 3869.86,
    3890.15, 3968.59, 3971.20, 4364.44, 4687.02, 5877.25, 6302.05, 6365.54, 6680.0, 7067.14,
    7137.77, 7321.94, 7332.21, 7753.19, 8752.9, 8865.2, 9017.4, 9231.5, 9548.6, 10052.13,
    10941.09, 12570.2, 15885.0, 16113.0, 16411.7, 16811.1, 17366.9, 18179.1, 19450.9,
    21661.2, 25649.0, 26258.7, 4568.0, 5200.3, 6330.0, 9850.3, 10289.5, 10323.3, 10339.2,
    18096.0,
}))

# Line pairs used to name redshift failures: a line A of the true spectrum taken for line B
# gives (1 + z_best) / (1 + z_true) = lambda_A / lambda_B.
_ALIAS_PAIRS: tuple[tuple[str, float, float], ...] = (
    ("Halpha->OIII5008", LINES["Halpha"], LINES["OIII5008"]),
    ("Halpha->Hbeta", LINES["Halpha"], LINES["Hbeta"]),
    ("Halpha->OII", LINES["Halpha"], 3728.48),
    ("Halpha->SIII9533", LINES["Halpha"], LINES["SIII9533"]),
    ("Halpha->SIII9071", LINES["Halpha"], LINES["SIII9071"]),
    ("Halpha->HeI10833", LINES["Halpha"], LINES["HeI10833"]),
    ("Halpha->Pabeta", LINES["Halpha"], LINES["Pabeta"]),
    ("Halpha->SII", LINES["Halpha"], 6725.0),
    ("OIII5008->Halpha", LINES["OIII5008"], LINES["Halpha"]),
    ("OIII5008->OII", LINES["OIII5008"], 3728.48),
    ("OIII5008->Hbeta", LINES["OIII5008"], LINES["Hbeta"]),
    ("Hbeta->OIII5008", LINES["Hbeta"], LINES["OIII5008"]),
    ("Hbeta->Halpha", LINES["Hbeta"], LINES["Halpha"]),
    ("Hbeta->OII", LINES["Hbeta"], 3728.48),
    ("OII->Halpha", 3728.48, LINES["Halpha"]),
    ("OII->OIII5008", 3728.48, LINES["OIII5008"]),
    ("OII->Hbeta", 3728.48, LINES["Hbeta"]),
    ("SIII9533->Halpha", LINES["SIII9533"], LINES["Halpha"]),
    ("SIII9533->SIII9071", LINES["SIII9533"], LINES["SIII9071"]),
    ("SIII9071->SIII9533", LINES["SIII9071"], LINES["SIII9533"]),
    ("HeI10833->Halpha", LINES["HeI10833"], LINES["Halpha"]),
    ("Pabeta->Halpha", LINES["Pabeta"], LINES["Halpha"]),
    ("SII->Halpha", 6725.0, LINES["Halpha"]),
    ("Halpha->NII6585", LINES["Halpha"], LINES["NII6585"]),
    ("NII6585->Halpha", LINES["NII6585"], LINES["Halpha"]),
)


def alias_ratios() -> dict[str, float]:
    """Redshift aliases: name -> (1 + z_best) / (1 + z_true) when line A is taken for line B.

    Examples: ``Halpha->OIII5008`` 1.3108, ``Halpha->Hbeta`` 1.3500, ``Halpha->OII`` 1.7607.
    """
    return {name: a / b for name, a, b in _ALIAS_PAIRS}


def classify_alias(z_best, z_true, tol: float = 0.003) -> np.ndarray:
    """Name the alias behind each redshift failure.

    Parameters
    ----------
    z_best, z_true : array_like
        Estimated and true redshifts.
    tol : float
        Relative tolerance on (1 + z_best) / (1 + z_true) for an alias match (and the success
        threshold |dz| / (1 + z_true)).

    Returns
    -------
    ndarray of str
        ``"ok"`` for successes, an alias name, or ``"other"``.
    """
    z_best = np.asarray(z_best, dtype=float)
    z_true = np.asarray(z_true, dtype=float)
    ratio = (1 + z_best) / (1 + z_true)
    out = np.full(z_best.shape, "other", dtype=object)
    ok = np.abs(z_best - z_true) / (1 + z_true) < tol
    best_err = np.full(z_best.shape, np.inf)
    for name, r in alias_ratios().items():
        err = np.abs(ratio / r - 1)
        hit = (err < tol) & (err < best_err) & ~ok
        out[hit] = name
        best_err[hit] = err[hit]
    out[ok] = "ok"
    out[~np.isfinite(z_best)] = "failed"
    return out.astype(str)
