"""Galaxy, star and quasar spectra on one instrument grid (HDF5 shards, deterministic, resumable).

Grids (:data:`GRIDS`): ``nisp`` is the grid, resolution and noise model of ``astrolearn
redshift simulate`` (12060-18920 A, 13.4 A pixels, R = 450, per-pixel sigma = noise x
exp(N(0, 0.2)) x (lambda / 15500)^-alpha, alpha in 0.5-2); ``optical`` is an SDSS/DESI-like
grid (3600-9800 A, 4 A pixels, R = 2000, flat noise of 4e-18 erg/s/cm2/A per pixel: S/N ~ 7
per pixel at AB 20).

Classes (:data:`CLASSES`), drawn with the probabilities ``fractions``:

- GALAXY: :func:`astrolearn.redshift.simulate.simulate_batch` on the same grid (its redshift,
  line-flux and equivalent-width ranges: :data:`GRIDS`);
- STAR: a spectrum of the library of :mod:`astrolearn.spectra.stars` that covers the window
  (NISP: the SpeX M/L/T dwarfs, or with probability ``hot_star_fraction`` a Basel Sun/Vega
  spectrum re-coloured to T_eff log-uniform in 3500-30000 K; optical: the Basel pair only),
  radial velocity uniform in +-``rv_max`` km/s, Calzetti reddening E(B-V) in 0-0.3, LSF;
- QSO: :mod:`astrolearn.spectra.qso` at z uniform in ``qso_zrange`` plus a host galaxy (a
  continuum of the galaxy simulator's templates, 0-``host_max`` times the quasar's continuum at
  5100 A rest), IGM included, LSF.

Stars and quasars get an AB magnitude (of the mean f_nu over the window, before the IGM)
uniform in ``mag_range``. Truth columns (:data:`TRUTH_COLUMNS`): ``label`` (index in
:data:`CLASSES`), ``z`` (quasars and galaxies; v/c for stars), ``mag``, ``snr_cont``
(median continuum S/N per pixel), ``snr_line`` (S/N of all emission lines together, 0 for
stars), ``template`` (star library index or galaxy template; -1 for quasars), ``teff`` (of
a re-coloured Basel star, else 0), ``ebv``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io.shards import SHARD_PATTERN, write_shard
from ..redshift.simulate import TRUTH_COLUMNS as GALAXY_COLUMNS
from ..redshift.simulate import NispConfig, prepare_output
from ..redshift.simulate import simulate_batch as simulate_galaxies
from ..redshift.templates import FWHM_SIGMA, PACKAGE_FAMILY, calzetti_klambda, load_family
from . import qso, stars as starlib

CLASSES = ("GALAXY", "STAR", "QSO")
TRUTH_COLUMNS = ["targetid", "label", "z", "mag", "snr_cont", "snr_line", "template", "teff", "ebv"]
C_KMS = 299792.458
#: Instrument grids and the galaxy settings that suit them.
GRIDS = {
    "nisp": {"wmin": 12060.0, "wmax": 18920.0, "dw": 13.4, "resolution": 450.0, "noise": 2.6e-18,
             "slope_min": 0.5, "slope_max": 2.0, "zmin": 0.5, "zmax": 2.5, "mag": (16.0, 22.0),
             "qso_z": (0.1, 7.0)},
    "optical": {"wmin": 3600.0, "wmax": 9800.0, "dw": 4.0, "resolution": 2000.0, "noise": 4e-18,
                "slope_min": 0.0, "slope_max": 0.0, "zmin": 0.01, "zmax": 1.2, "mag": (16.0, 22.0),
                "qso_z": (0.1, 5.0), "flux_min": 3e-17, "flux_max": 3e-15, "ew_min": 3.0, "ew_max": 300.0,
                "no_line_fraction": 0.2},
}
_GALAXY_KEYS = ("wmin", "wmax", "dw", "resolution", "noise", "slope_min", "slope_max", "zmin", "zmax",
                "flux_min", "flux_max", "ew_min", "ew_max", "no_line_fraction")


@dataclass
class SpectraConfig:
    """Simulation settings (stored in every shard's ``config`` attribute).

    Attributes
    ----------
    grid : str
        A key of :data:`GRIDS`.
    fractions : list of float
        Probabilities of GALAXY, STAR, QSO (normalised).
    mag_range : list of float, optional
        AB magnitude range of stars and quasars (default: the grid's).
    qso_zrange : list of float, optional
        Quasar redshift range (default: the grid's).
    galaxy_zrange : list of float, optional
        Galaxy redshift range (default: the grid's).
    rv_max : float
        Stellar radial velocities are uniform in +-rv_max [km/s].
    host_max : float
        Quasars get a host galaxy (a shipped galaxy continuum) of f_host times their own
        continuum at 5100 A (rest), f_host uniform in 0-host_max.
    hot_star_fraction : float
        Share of stars drawn from the re-coloured Basel spectra where the SpeX ones cover the grid.
    noise : float, optional
        Median per-pixel noise [erg/s/cm2/A] (default: the grid's).
    truncate_fraction : float
        Share of spectra that lose 0-40 % of the window at one end (noise = inf, flux = 0), as
        real spectra that cover only part of a model's range.
    shard_size : int
    """

    grid: str = "nisp"
    fractions: list = field(default_factory=lambda: [1 / 3, 1 / 3, 1 / 3])
    mag_range: list | None = None
    qso_zrange: list | None = None
    galaxy_zrange: list | None = None
    rv_max: float = 300.0
    hot_star_fraction: float = 0.3
    host_max: float = 1.0
    noise: float | None = None
    truncate_fraction: float = 0.2
    shard_size: int = 1000

    def validate(self):
        """Raise ``UserError`` for inconsistent settings."""
        if self.grid not in GRIDS:
            raise UserError(f"--grid must be one of {', '.join(GRIDS)}, not {self.grid!r}")
        f = np.asarray(self.fractions, dtype=float)
        if f.shape != (3,) or np.any(f < 0) or not f.sum() > 0:
            raise UserError("--fractions must be 3 non-negative numbers (GALAXY STAR QSO) with a positive sum")
        lo, hi = self.mags
        if not lo <= hi:
            raise UserError("--mag-range must satisfy MIN <= MAX")
        zlo, zhi = self.qso_z
        if not 0 <= zlo <= zhi <= 10:
            raise UserError("--qso-zrange must satisfy 0 <= ZMIN <= ZMAX <= 10")
        if not (0 <= self.rv_max <= 3000):
            raise UserError("--rv-max must be in [0, 3000] km/s")
        if not (0 <= self.truncate_fraction <= 1):
            raise UserError("--truncate-fraction must be in [0, 1]")
        if not (0 <= self.host_max <= 10):
            raise UserError("--host-max must be in [0, 10]")
        if not (0 <= self.hot_star_fraction <= 1):
            raise UserError("--hot-star-fraction must be in [0, 1]")
        if self.shard_size < 1:
            raise UserError("--shard-size must be >= 1")
        self.galaxy_config().validate()

    @property
    def mags(self):
        return tuple(self.mag_range or GRIDS[self.grid]["mag"])

    @property
    def qso_z(self):
        return tuple(self.qso_zrange or GRIDS[self.grid]["qso_z"])

    def galaxy_config(self) -> NispConfig:
        """The galaxy simulator's settings on this grid."""
        g = {k: v for k, v in GRIDS[self.grid].items() if k in _GALAXY_KEYS}
        if self.noise is not None:
            g["noise"] = self.noise
        if self.galaxy_zrange is not None:
            g["zmin"], g["zmax"] = self.galaxy_zrange
        return NispConfig(shard_size=self.shard_size, **g)

    @property
    def wave(self) -> np.ndarray:
        return self.galaxy_config().wave

    def instrument(self) -> dict:
        inst = self.galaxy_config().instrument()
        inst["name"] = self.grid
        return inst


def ab_mag(wave, flam) -> np.ndarray:
    """AB magnitude of the mean f_nu over the window (``flam`` (N, M) [erg/s/cm2/A])."""
    fnu = flam * wave**2 / 2.99792458e18
    return -2.5 * np.log10(np.maximum(fnu.mean(axis=1), 1e-300)) - 48.6


def _scale_to_mag(wave, model, mags):
    return model * (10 ** (-0.4 * (mags - ab_mag(wave, model))))[:, None]


def _noise(cfg: NispConfig, rng, n, wave):
    """Per-pixel sigma, drawn as :func:`astrolearn.redshift.simulate.simulate_batch` draws it."""
    level = cfg.noise * np.exp(rng.normal(0.0, cfg.noise_scatter, n))
    slope = rng.uniform(cfg.slope_min, cfg.slope_max, n)
    return level[:, None] * (wave[None, :] / 15500.0) ** (-slope[:, None])


def star_library(cfg: SpectraConfig):
    """The shipped stellar library convolved with the grid's line-spread function."""
    return starlib.load_stars().smoothed(1.0 / (cfg.galaxy_config().resolution * FWHM_SIGMA))


def simulate_stars(cfg: SpectraConfig, rng, n, library):
    """Noise-free stars: flux (n, M), truth dict (``library``: :func:`star_library`)."""
    gcfg = cfg.galaxy_config()
    wave = gcfg.wave
    beta_max = cfg.rv_max / C_KMS
    ok = starlib.covering(library, wave[0] / (1 + beta_max) * 0.99, wave[-1] / (1 - beta_max) * 1.01)
    basel = np.intersect1d(ok, starlib.basel_indices(library))
    spex = np.setdiff1d(ok, basel)
    if not len(ok):
        raise UserError(f"no star of the library covers {wave[0]:.0f}-{wave[-1]:.0f} A")
    hot = rng.uniform(size=n) < (cfg.hot_star_fraction if len(spex) else 1.0)
    hot &= len(basel) > 0
    pick = np.where(hot, rng.choice(basel, n) if len(basel) else 0, rng.choice(spex, n) if len(spex) else 0)
    teff = np.where(hot, np.exp(rng.uniform(math.log(3500.0), math.log(30000.0), n)), 0.0)
    beta = rng.uniform(-beta_max, beta_max, n)
    ebv = rng.uniform(0.0, 0.3, n)
    mags = rng.uniform(*cfg.mags, n)
    rest = wave[None, :] / (1 + beta[:, None])
    u = (np.log(rest) - library.loglam[0]) / library.dloglam
    i0 = np.clip(np.floor(u).astype(np.int64), 0, len(library.loglam) - 2)
    frac = u - i0
    flux = library.flux[pick[:, None], i0] * (1 - frac) + library.flux[pick[:, None], i0 + 1] * frac
    t_from = np.array([dict((n_, t) for n_, _, t in starlib.BASEL).get(library.names[i], 1.0) for i in pick])
    flux = np.where(hot[:, None], flux * starlib.tilted(rest, t_from[:, None], np.maximum(teff, 1.0)[:, None]), flux)
    flux = flux * 10 ** (-0.4 * ebv[:, None] * calzetti_klambda(rest))
    flux = _scale_to_mag(wave, flux, mags)
    return flux, {"z": beta, "mag": mags, "template": pick, "teff": teff, "ebv": ebv,
                  "cont": flux, "lines": np.zeros_like(flux)}


def simulate_qsos(cfg: SpectraConfig, rng, n):
    """Noise-free quasars: flux (n, M), truth dict."""
    gcfg = cfg.galaxy_config()
    wave = gcfg.wave
    z = rng.uniform(*cfg.qso_z, n)
    mags = rng.uniform(*cfg.mags, n)
    rest = wave[None, :] / (1 + z[:, None])
    cont, lines = qso.qso_rest_model(rest, rng, n, 1.0 / (gcfg.resolution * FWHM_SIGMA))
    # host galaxy: a galaxy continuum of f_host x the quasar continuum at 5100 A (rest)
    hosts = load_family(PACKAGE_FAMILY).smoothed(1.0 / (gcfg.resolution * FWHM_SIGMA))
    pick = rng.integers(0, len(hosts.names), n)
    f_host = rng.uniform(0.0, cfg.host_max, n)
    host = np.take_along_axis(hosts.at_wavelengths(rest), pick[:, None, None], axis=2)[:, :, 0]
    at = hosts.at_wavelengths(np.full(n, 5100.0))[np.arange(n), pick]
    cont = cont + host * (f_host * qso.continuum(np.full((n, 1), 5100.0), qso.ALPHA_BLUE)[:, 0] / at)[:, None]
    scale = 10 ** (-0.4 * (mags - ab_mag(wave, cont)))[:, None]
    igm = qso.igm_transmission(wave, z, rng)
    cont, lines = cont * scale * igm, lines * scale * igm
    return cont + lines, {"z": z, "mag": mags, "template": np.full(n, -1), "teff": np.zeros(n),
                          "ebv": np.zeros(n), "cont": cont, "lines": lines}


def simulate_batch(cfg: SpectraConfig, rng: np.random.Generator, n: int, first_id: int = 0, library=None):
    """Simulate ``n`` spectra of the three classes (``library``: :func:`star_library`, to reuse it).

    Returns
    -------
    flux, noise : ndarray (n, M) float32
        Noisy flux density and its per-pixel sigma [erg/s/cm2/A].
    params : ndarray (n, P) float64
        Truth, columns :data:`TRUTH_COLUMNS`.
    """
    gcfg = cfg.galaxy_config()
    wave = gcfg.wave
    frac = np.asarray(cfg.fractions, dtype=float)
    label = rng.choice(3, n, p=frac / frac.sum())
    flux = np.zeros((n, wave.size), dtype=np.float32)
    noise = np.zeros_like(flux)
    cols = {c: np.zeros(n) for c in TRUTH_COLUMNS}
    cols["targetid"] = first_id + np.arange(n)
    cols["label"] = label
    gal = np.flatnonzero(label == 0)
    if len(gal):
        f, s, p = simulate_galaxies(gcfg, rng, len(gal))
        g = dict(zip(GALAXY_COLUMNS, p.T))
        flux[gal], noise[gal] = f, s
        cols["z"][gal] = g["z"]
        cols["mag"][gal] = ab_mag(wave, np.broadcast_to(g["cont_level"][:, None], f.shape))
        cols["snr_cont"][gal] = g["cont_level"] / np.median(s, axis=1)
        cols["snr_line"][gal] = g["lines_snr"]
        cols["template"][gal] = g["template"]
        cols["ebv"][gal] = g["ebv_gas"]
    for k, make in ((1, lambda m: simulate_stars(cfg, rng, m, library or star_library(cfg))),
                    (2, lambda m: simulate_qsos(cfg, rng, m))):
        rows = np.flatnonzero(label == k)
        if not len(rows):
            continue
        model, t = make(len(rows))
        sigma = _noise(gcfg, rng, len(rows), wave)
        flux[rows] = model + sigma * rng.standard_normal(model.shape)
        noise[rows] = sigma
        for c in ("z", "mag", "template", "teff", "ebv"):
            cols[c][rows] = t[c]
        cols["snr_cont"][rows] = np.median(np.abs(t["cont"]) / sigma, axis=1)
        cols["snr_line"][rows] = np.sqrt(np.sum((t["lines"] / sigma) ** 2, axis=1))
    cut = np.flatnonzero(rng.uniform(size=n) < cfg.truncate_fraction)
    lost = (rng.uniform(0.0, 0.4, cut.size) * wave.size).astype(int)
    red = rng.uniform(size=cut.size) < 0.5
    for r, k, at_red in zip(cut, lost, red):
        sl = slice(wave.size - k, None) if at_red else slice(0, k)
        flux[r, sl], noise[r, sl] = 0.0, np.inf
    params = np.stack([np.asarray(cols[c], dtype=np.float64) for c in TRUTH_COLUMNS], axis=1)
    return flux, noise, params


def simulate(out, n: int, seed: int = 0, cfg: SpectraConfig | None = None, overwrite: bool = False,
             progress: bool = True):
    """Simulate ``n`` spectra into shards ``out/shard-00000.h5``, ... (resumable, see
    :func:`astrolearn.redshift.simulate.prepare_output`); shard i uses ``default_rng([seed, i])``.

    Returns
    -------
    list of Path
    """
    from tqdm import tqdm

    cfg = cfg or SpectraConfig()
    cfg.validate()
    if n < 1:
        raise UserError("--n must be >= 1")
    out = Path(out)
    library = star_library(cfg)
    conf = asdict(cfg)
    desc = {"kind": "astrolearn.spectra.simulate", "n": int(n), "seed": int(seed), "config": conf}
    paths = [out / SHARD_PATTERN.format(i) for i in range(-(-n // cfg.shard_size))]
    prepare_output(out, desc, paths, overwrite)
    for i in tqdm([i for i, p in enumerate(paths) if not p.exists()], desc="simulate", unit="shard",
                  disable=not progress):
        rng = np.random.default_rng([int(seed), i])
        count = min(cfg.shard_size, n - i * cfg.shard_size)
        flux, noise, params = simulate_batch(cfg, rng, count, first_id=i * cfg.shard_size, library=library)
        meta = {"domain": "spectra", "instrument": cfg.instrument(), "seed": int(seed), "shard_index": i,
                "n_total": int(n), "config": conf, "wave": cfg.wave, "classes": list(CLASSES)}
        write_shard(paths[i], {"flux": flux, "noise": noise}, params, TRUTH_COLUMNS, meta)
    return paths
