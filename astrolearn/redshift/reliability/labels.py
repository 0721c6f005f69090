"""What counts as a reliable redshift: the 2-class and 3-class labelling schemes.

Three schemes are built in (:data:`SCHEMES`), each a :class:`LabelScheme`:

``classical`` (2 classes: success, failure)
    Success when ``|z_best - z_true| / (1 + z_true) < 0.003``. The usual catastrophic-failure
    criterion of spectroscopic surveys: 0.003 in (1 + z) is ~900 km/s, a few resolution elements
    of a low-resolution (R ~ 400) slitless spectrum, and well below the separation of any two
    lines taken for each other (the closest alias, Halpha/[NII] 6585, is 0.3 % away), so the
    criterion separates "right line" from "wrong line" and does not depend on the precise
    redshift error of a correct identification.

``euclid`` (2 classes: success, failure)
    As ``classical``, and the true redshift must lie in 0.9 < z < 1.8: the range where Halpha
    falls in the NISP red grism (1.25-1.85 um) and the galaxy enters the Euclid clustering
    sample. A correct redshift outside the window is useless to that sample and is counted as a
    failure, so that purity and completeness refer to the cosmology catalogue itself.

``3class`` (success, confusion, failure)
    Failures split into *line confusions*, which the PDF can reveal (a known line alias:
    ``(1 + z_best) / (1 + z_true)`` within the tolerance of a ratio of
    :func:`astrolearn.redshift.lines.alias_ratios`, or the truth on a secondary peak of the
    PDF, i.e. on one of the other candidates), and other failures (noise peaks, continuum
    mismatch). Telling them apart says whether a second look at the PDF can rescue the spectrum.

Spectra without a redshift (``z_best`` not finite, e.g. no valid pixel) are failures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from ..lines import alias_ratios

SUCCESS = "success"
CONFUSION = "confusion"
FAILURE = "failure"
#: Default tolerance on |dz| / (1 + z_true).
TOLERANCE = 0.003
#: True-redshift window of the ``euclid`` scheme (Halpha in the NISP red grism).
EUCLID_WINDOW = (0.9, 1.8)


@dataclass(frozen=True)
class LabelScheme:
    """A labelling of redshift estimates against the truth.

    Attributes
    ----------
    name : str
        Scheme name (stored with the models).
    classes : tuple of str
        Class names in label order: ``("success", "failure")`` or
        ``("success", "confusion", "failure")``. Label 0 is always ``"success"``.
    tolerance : float
        Success when ``|z_best - z_true| / (1 + z_true) < tolerance``; also the relative
        tolerance of alias and secondary-peak matches.
    window : tuple of float or None
        Success also requires ``window[0] < z_true < window[1]``.
    """

    name: str
    classes: tuple[str, ...]
    tolerance: float = TOLERANCE
    window: tuple[float, float] | None = None

    def __post_init__(self):
        if self.classes not in ((SUCCESS, FAILURE), (SUCCESS, CONFUSION, FAILURE)):
            raise UserError(f"label classes must be success,failure or success,confusion,failure, "
                            f"not {','.join(self.classes)}")
        if not 0 < self.tolerance < 1:
            raise UserError(f"label tolerance must be in (0, 1), not {self.tolerance}")
        if self.window is not None and not self.window[0] < self.window[1]:
            raise UserError(f"redshift window must satisfy ZMIN < ZMAX, not {self.window}")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def labels(self, z_best, z_true, secondary=None) -> np.ndarray:
        """Integer class labels (index into :attr:`classes`).

        Parameters
        ----------
        z_best, z_true : array_like, shape (N,)
            Estimated and true redshifts.
        secondary : array_like, shape (N, K), optional
            Redshifts of the other PDF peaks (candidates 2, 3, ...; NaN where absent). Needed by
            the 3-class scheme to recognise a truth on a secondary peak; without it only known
            aliases make confusions.

        Returns
        -------
        ndarray of int64, shape (N,)
        """
        z_best = np.asarray(z_best, dtype=np.float64)
        z_true = np.asarray(z_true, dtype=np.float64)
        if z_best.shape != z_true.shape or z_best.ndim != 1:
            raise ValueError(f"z_best {z_best.shape} and z_true {z_true.shape} must be equal 1-D shapes")
        with np.errstate(invalid="ignore"):
            success = np.abs(z_best - z_true) / (1 + z_true) < self.tolerance
            if self.window is not None:
                success &= (z_true > self.window[0]) & (z_true < self.window[1])
        label = np.full(z_best.shape, self.classes.index(FAILURE), dtype=np.int64)
        if CONFUSION in self.classes:
            confused = is_confusion(z_best, z_true, secondary, self.tolerance) & ~success
            label[confused] = self.classes.index(CONFUSION)
        label[success] = self.classes.index(SUCCESS)
        return label

    def to_dict(self) -> dict:
        """JSON-able description (stored with a trained model)."""
        return {"name": self.name, "classes": list(self.classes), "tolerance": self.tolerance,
                "window": None if self.window is None else list(self.window)}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelScheme":
        window = d.get("window")
        return cls(d["name"], tuple(d["classes"]), float(d["tolerance"]), None if window is None else tuple(window))


def is_confusion(z_best, z_true, secondary=None, tolerance: float = TOLERANCE) -> np.ndarray:
    """Whether each estimate is a line confusion (see the module documentation).

    Parameters
    ----------
    z_best, z_true : ndarray, shape (N,)
    secondary : ndarray, shape (N, K), optional
        Redshifts of the secondary PDF peaks.
    tolerance : float
        Relative tolerance of the alias ratio match and of the secondary-peak match.

    Returns
    -------
    ndarray of bool, shape (N,)
        Also true for successes whose ratio happens to match (callers mask successes out).
    """
    ratio = (1 + z_best) / (1 + z_true)
    out = np.zeros(z_best.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        for r in alias_ratios().values():
            out |= np.abs(ratio / r - 1) < tolerance
        if secondary is not None:
            secondary = np.asarray(secondary, dtype=np.float64)
            if secondary.ndim != 2 or len(secondary) != len(z_true):
                raise ValueError(f"secondary peaks must have shape (N, K), not {secondary.shape}")
            out |= np.any(np.abs(secondary - z_true[:, None]) / (1 + z_true[:, None]) < tolerance, axis=1)
    return out


#: The built-in schemes, by name.
SCHEMES: dict[str, LabelScheme] = {
    "classical": LabelScheme("classical", (SUCCESS, FAILURE)),
    "euclid": LabelScheme("euclid", (SUCCESS, FAILURE), window=EUCLID_WINDOW),
    "3class": LabelScheme("3class", (SUCCESS, CONFUSION, FAILURE)),
}


def get_scheme(name: str, tolerance: float | None = None, window=None) -> LabelScheme:
    """A built-in scheme, optionally with another tolerance or true-redshift window.

    Parameters
    ----------
    name : str
        ``classical``, ``euclid`` or ``3class``.
    tolerance : float, optional
        Replaces the scheme's tolerance.
    window : pair of float, optional
        Replaces the scheme's true-redshift window.
    """
    if name not in SCHEMES:
        raise UserError(f"unknown label scheme {name!r} (known: {', '.join(SCHEMES)})")
    base = SCHEMES[name]
    return LabelScheme(name, base.classes, base.tolerance if tolerance is None else float(tolerance),
                       base.window if window is None else (float(window[0]), float(window[1])))
