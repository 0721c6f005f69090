"""Instrument presets for PSF modelling (data in ``presets/*.yaml``; users add their own).

An :class:`Instrument` holds the telescope and camera description used by the PSFAO model,
the simulator and the fit; it derives the numerical grids (sampling, oversampling, pupil
arrays). Presets are YAML files; pass a preset name (``nirc2``, ``irdis``) or a path.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from ..errors import UserError

PRESET_DIR = Path(__file__).parent / "presets"
RAD2MAS = 180.0 / math.pi * 3600e3


def available_presets() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


@dataclass
class Instrument:
    """Telescope + camera description.

    Attributes
    ----------
    name : str
        Preset identifier (stored in data sets and models, checked when loading them).
    diameter_m : float
        Pupil diameter [m].
    obscuration : float
        Central obscuration diameter as a fraction of ``diameter_m``.
    pixel_scale_mas : float
        Detector pixel scale [mas].
    wavelength_um : float
        Observing wavelength [um].
    nact : int
        Deformable-mirror actuators across the pupil; AO cut-off frequency (nact-1)/(2D) [1/m].
    npix : int
        Image side [pixels] (even).
    outer_scale_m : float
        Von Karman outer scale L0 [m].
    pupil, static, detector : dict
        Pupil geometry, static-aberration basis and detector/noise settings (see presets).
    header : dict
        What the FITS headers of the camera's frames say, checked against the model by
        :func:`astrolearn.psf.data.check_header` (empty: nothing checked).
    """

    name: str
    diameter_m: float
    obscuration: float
    pixel_scale_mas: float
    wavelength_um: float
    nact: int
    npix: int = 128
    outer_scale_m: float = 10.0
    fullname: str = ""
    pupil: dict = field(default_factory=lambda: {"kind": "circular"})
    static: dict = field(default_factory=lambda: {"kind": "none"})
    detector: dict = field(default_factory=dict)
    header: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.npix % 2:
            raise UserError(f"instrument {self.name}: npix must be even, got {self.npix}")
        for key in ("diameter_m", "pixel_scale_mas", "wavelength_um"):
            if not getattr(self, key) > 0:
                raise UserError(f"instrument {self.name}: {key} must be positive")

    # ---- description -------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON/YAML-serialisable description (stored with data sets and models)."""
        return {
            "name": self.name,
            "fullname": self.fullname,
            "diameter_m": self.diameter_m,
            "obscuration": self.obscuration,
            "pixel_scale_mas": self.pixel_scale_mas,
            "wavelength_um": self.wavelength_um,
            "nact": self.nact,
            "npix": self.npix,
            "outer_scale_m": self.outer_scale_m,
            "pupil": copy.deepcopy(self.pupil),
            "static": copy.deepcopy(self.static),
            "detector": copy.deepcopy(self.detector),
            "header": copy.deepcopy(self.header),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Instrument":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise UserError(f"instrument description: unknown keys {sorted(unknown)}")
        return cls(**copy.deepcopy(data))

    def with_wavelength(self, wavelength_um: float | None) -> "Instrument":
        """Copy of this instrument at another wavelength (``None``: unchanged)."""
        if wavelength_um is None or wavelength_um == self.wavelength_um:
            return self
        data = self.to_dict()
        data["wavelength_um"] = float(wavelength_um)
        return Instrument.from_dict(data)

    # ---- derived quantities ------------------------------------------------------------
    @property
    def wavelength_m(self) -> float:
        return self.wavelength_um * 1e-6

    @property
    def pixel_rad(self) -> float:
        return self.pixel_scale_mas / RAD2MAS

    @property
    def sampling(self) -> float:
        """lambda/D in pixels (2 = Nyquist)."""
        return self.wavelength_m / (self.pixel_rad * self.diameter_m)

    @property
    def oversampling(self) -> int:
        """Integer factor k so that the computation grid is at least Nyquist-sampled."""
        return int(math.ceil(2.0 / self.sampling))

    @property
    def npix_over(self) -> int:
        return self.npix * self.oversampling

    @property
    def freq_step(self) -> float:
        """Spatial-frequency step of the PSD/OTF grid [1/m]."""
        return 1.0 / (self.diameter_m * self.sampling * self.oversampling)

    @property
    def cutoff_freq(self) -> float:
        """AO cut-off frequency (nact-1)/(2D) [1/m]."""
        return (self.nact - 1) / (2.0 * self.diameter_m)

    @property
    def npup(self) -> int:
        """Pupil diameter in computation-grid pixels, rounded up (maoppy's convention)."""
        return int(math.ceil(self.npix_over / (self.sampling * self.oversampling)))

    @property
    def pupil_oversampling(self) -> int:
        """Factor m: the pupil is drawn on m x finer pixels to resolve segments and spiders."""
        return max(1, int(math.ceil(self.pupil.get("min_pixels", 0) / self.npup)))

    @property
    def pupil_pixel_m(self) -> float:
        """Pupil pixel size [m] on the fine pupil grid.

        ``scale: maoppy`` reproduces maoppy (diameter = ``npup`` pixels, rounded up);
        the default puts the pupil at its exact size for the image sampling.
        """
        m = self.pupil_oversampling
        if self.pupil.get("scale", "exact") == "maoppy":
            return self.diameter_m / (self.npup * m)
        return self.diameter_m * self.sampling * self.oversampling / (self.npix_over * m)

    @property
    def pupil_npix(self) -> int:
        """Side of the fine pupil array [pixels]."""
        return self.npup * self.pupil_oversampling

    @cached_property
    def pupil_array(self) -> np.ndarray:
        """Pupil transmission on the fine grid, (pupil_npix, pupil_npix), values in [0, 1]."""
        from .pupils import make_pupil

        return make_pupil(self.pupil, self.pupil_npix, self.pupil_pixel_m, self.diameter_m, self.obscuration)

    @cached_property
    def static_basis(self) -> np.ndarray:
        """Static-aberration modes, (K, pupil_npix, pupil_npix) [nm per unit coefficient]."""
        from .pupils import make_static_basis

        return make_static_basis(self.static, self.pupil_array, self.pupil_pixel_m, self.diameter_m)

    @property
    def n_static(self) -> int:
        return int(self.static_basis.shape[0])

    def static_names(self) -> list[str]:
        return [f"stat_{i + 1}" for i in range(self.n_static)]

    def without_static(self) -> "Instrument":
        data = self.to_dict()
        data["static"] = {"kind": "none"}
        return Instrument.from_dict(data)


def load_instrument(name_or_path: str | dict | Instrument, wavelength_um: float | None = None) -> Instrument:
    """Load a preset by name (``nirc2``, ``irdis``), from a YAML file, or from a dict."""
    if isinstance(name_or_path, Instrument):
        inst = name_or_path
    elif isinstance(name_or_path, dict):
        inst = Instrument.from_dict(name_or_path)
    else:
        path = Path(name_or_path)
        if not path.suffix:
            path = PRESET_DIR / f"{name_or_path}.yaml"
            if not path.exists():
                raise UserError(
                    f"unknown instrument {name_or_path!r} (presets: {', '.join(available_presets())}; "
                    "or give a YAML file)"
                )
        elif not path.exists():
            raise UserError(f"{path}: no such instrument file")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: invalid YAML ({exc.__class__.__name__})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: not an instrument description")
        inst = Instrument.from_dict(data)
    return inst.with_wavelength(wavelength_um)
