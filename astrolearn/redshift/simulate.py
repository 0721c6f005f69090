"""Euclid NISP red-grism spectrum simulator (HDF5 shards, deterministic, resumable).

Instrument: 12060-18920 Angstrom, 13.4 A/pixel (512 pixels), Gaussian line-spread function of
resolving power R = lambda / FWHM (default 450, for a typical extended source; the NISP
point-source LSF table ``EuclidNISPVSSPSF201707.fits`` has R ~ 650-780 if its widths are
Gaussian sigmas), vacuum wavelengths, flux densities in erg/s/cm2/A.

Galaxies (one draw per spectrum, truth stored in ``params``):

- z uniform in [zmin, zmax] (default 0.5-2.5; Halpha is in the window for 0.84 < z < 1.88);
- Halpha flux log-uniform in [flux_min, flux_max] erg/s/cm2 (default 5e-17-1e-15, around the
  Euclid limit 2e-16 where S/N ~ 3.5); a fraction ``no_line_fraction`` has no lines at all;
- line ratios: [NII]6585/Halpha 0.05-0.5 (log-uniform, [NII]6550 = 6585/2.95); [SII] total
  0.1-0.4 Halpha, 6718/6733 in 1.0-1.45; Balmer decrement Halpha/Hbeta 2.86-6, the matching
  gas E(B-V) (Calzetti) reddens the Paschen lines (case B ratios) and the continuum
  (E_star = 0.44 E_gas); [OIII]5008/Hbeta 0.3-8 (log-uniform, 4960 = 5008/2.98); [OII]
  3727+3730 = 0.2-1.5 Halpha, 3730/3727 in 1.0-1.5; [SIII]9533 = 0.05-0.3 Halpha (9071 =
  9533/2.44); HeI10833 = 0.03-0.15 Halpha; velocity dispersion 50-200 km/s;
- continuum: one of the templates of ``NispConfig.templates`` (default the shipped kcorrect set;
  or a template FITS file, text template or directory of them, see
  :func:`~astrolearn.redshift.templates.load_family`; emission lines removed), Calzetti dust,
  normalised by the Halpha rest equivalent width (log-uniform 30-300 A); galaxies without
  lines get a mean continuum log-uniform in 3e-19-3e-18 erg/s/cm2/A over the window;
- noise: Gaussian, per-pixel sigma = noise * exp(N(0, noise_scatter)) * (lambda/15500)^-alpha,
  alpha uniform in 0.5-2.0 (the level and slope of the Euclid-format spectrum 134845168.dat,
  2.6e-18 erg/s/cm2/A, falling to the red).

Shards: ``flux`` and ``noise`` (N, 512) float32 [erg/s/cm2/A], truth ``params`` (see
:data:`TRUTH_COLUMNS`), the wavelength grid as the file attribute ``wave`` (Angstrom); every
shard is made from ``numpy.random.default_rng([seed, shard_index])`` so the same seed gives
byte-identical files, and an interrupted run regenerates only the missing shards.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io.shards import SHARD_PATTERN, atomic_write, write_shard
from .lines import LINES
from .templates import FWHM_SIGMA, PACKAGE_FAMILY, ContinuumTemplates, calzetti_klambda, load_family

C_KMS = 299792.458
#: Case-B intrinsic line ratios relative to Halpha (T = 1e4 K, n_e = 100 cm^-3).
CASE_B = {"Hbeta": 1 / 2.86, "Paalpha": 0.116, "Pabeta": 0.0566, "Pagamma": 0.0316, "Padelta": 0.0194}
LINE_NAMES = list(LINES)
TRUTH_COLUMNS = (["targetid", "z", "halpha_flux", "halpha_snr", "lines_snr", "has_lines", "template",
                  "ebv_gas", "vdisp", "ew_halpha", "cont_level", "noise_level", "noise_slope"]
                 + [f"flux_{k}" for k in LINE_NAMES])


@dataclass
class NispConfig:
    """Simulation settings (stored in every shard's ``config`` attribute).

    Attributes
    ----------
    wmin, wmax, dw : float
        Wavelength range and pixel size [Angstrom].
    resolution : float
        Resolving power R = lambda / FWHM of the Gaussian LSF.
    zmin, zmax : float
        Uniform redshift range.
    flux_min, flux_max : float
        Log-uniform Halpha flux range [erg/s/cm2].
    no_line_fraction : float
        Fraction of spectra without emission lines.
    ew_min, ew_max : float
        Log-uniform Halpha rest equivalent width [Angstrom].
    noise : float
        Median per-pixel noise [erg/s/cm2/A].
    noise_scatter : float
        Log-normal scatter of the per-spectrum noise level.
    slope_min, slope_max : float
        Range of alpha in sigma(lambda) ~ lambda^-alpha.
    shard_size : int
        Spectra per shard.
    templates : str
        Continuum template family: ``"package"`` (the shipped set) or a path (see
        :func:`~astrolearn.redshift.templates.load_family`). Only the simulated continua change;
        the redshift engine keeps its own templates.
    """

    wmin: float = 12060.0
    wmax: float = 18920.0
    dw: float = 13.4
    resolution: float = 450.0
    zmin: float = 0.5
    zmax: float = 2.5
    flux_min: float = 5e-17
    flux_max: float = 1e-15
    no_line_fraction: float = 0.1
    ew_min: float = 30.0
    ew_max: float = 300.0
    noise: float = 2.6e-18
    noise_scatter: float = 0.2
    slope_min: float = 0.5
    slope_max: float = 2.0
    shard_size: int = 1000
    templates: str = PACKAGE_FAMILY
    extra: dict = field(default_factory=dict)

    def validate(self):
        """Raise ``UserError`` for inconsistent settings."""
        if not (self.wmax > self.wmin > 0 and self.dw > 0):
            raise UserError("wavelength range must satisfy 0 < wmin < wmax and dw > 0")
        if not (self.resolution > 0):
            raise UserError("--resolution must be > 0")
        if not (-1 < self.zmin <= self.zmax):
            raise UserError("--zrange must satisfy -1 < ZMIN <= ZMAX")
        if not (0 < self.flux_min <= self.flux_max):
            raise UserError("--flux-range must satisfy 0 < FMIN <= FMAX")
        if not (0 <= self.no_line_fraction <= 1):
            raise UserError("--no-line-fraction must be in [0, 1]")
        if not (self.noise > 0):
            raise UserError("--noise must be > 0")
        if self.shard_size < 1:
            raise UserError("--shard-size must be >= 1")

    def continuum_templates(self) -> ContinuumTemplates:
        """The family's templates, checked to cover the rest wavelengths the settings need."""
        tpl = load_family(self.templates)
        need = (self.wmin / (1 + self.zmax), self.wmax / (1 + self.zmin))
        have = (float(tpl.wave[0]), float(tpl.wave[-1]))
        if have[0] > need[0] or have[1] < need[1]:
            raise UserError(f"--templates {self.templates}: covers {have[0]:.0f}-{have[1]:.0f} A (rest), the "
                            f"simulation needs {need[0]:.0f}-{need[1]:.0f} A")
        return tpl

    @property
    def wave(self) -> np.ndarray:
        """Pixel centres [Angstrom]."""
        npix = int(round((self.wmax - self.wmin) / self.dw))
        return self.wmin + self.dw * np.arange(npix)

    def instrument(self) -> dict:
        """Instrument description stored in the shards."""
        return {"name": "nisp-red", "wmin": self.wmin, "wmax": self.wmax, "dw": self.dw,
                "npix": int(self.wave.size), "resolution": self.resolution, "lsf": "gaussian",
                "vacuum": True, "flux_unit": "erg/s/cm2/A"}


def pixel_gaussian(edges_lo, edges_hi, mu, sigma) -> np.ndarray:
    """Mean over each pixel of a unit-flux Gaussian line [1/Angstrom].

    Parameters
    ----------
    edges_lo, edges_hi : ndarray (M,)
        Pixel edges [Angstrom].
    mu, sigma : ndarray (N, 1)
        Line centres and sigmas [Angstrom].
    """
    from scipy.special import erf

    s = np.sqrt(2.0) * sigma
    frac = 0.5 * (erf((edges_hi - mu) / s) - erf((edges_lo - mu) / s))
    return frac / (edges_hi - edges_lo)


def simulate_batch(cfg: NispConfig, rng: np.random.Generator, n: int, first_id: int = 0,
                   templates: ContinuumTemplates | None = None):
    """Simulate ``n`` spectra.

    ``templates`` (default ``cfg.continuum_templates()``) saves re-reading the family per batch.

    Returns
    -------
    flux, noise : ndarray (n, M) float32
        Noisy flux density and its per-pixel sigma [erg/s/cm2/A].
    params : ndarray (n, P) float64
        Truth, columns :data:`TRUTH_COLUMNS`.
    """
    wave = cfg.wave
    M = wave.size
    lo, hi = wave - cfg.dw / 2, wave + cfg.dw / 2
    tpl = (templates or cfg.continuum_templates()).smoothed(1.0 / (cfg.resolution * FWHM_SIGMA))
    T = len(tpl.names)
    # -- draws (fixed order: same seed -> same spectra) ---------------------------------------
    z = rng.uniform(cfg.zmin, cfg.zmax, n)
    has = rng.uniform(size=n) >= cfg.no_line_fraction
    log_f = rng.uniform(math.log(cfg.flux_min), math.log(cfg.flux_max), n)
    f_ha = np.where(has, np.exp(log_f), 0.0)
    nii = np.exp(rng.uniform(math.log(0.05), math.log(0.5), n))
    sii = rng.uniform(0.1, 0.4, n)
    sii_ratio = rng.uniform(1.0, 1.45, n)
    decrement = rng.uniform(2.86, 6.0, n)
    o3hb = np.exp(rng.uniform(math.log(0.3), math.log(8.0), n))
    o2 = rng.uniform(0.2, 1.5, n)
    o2_ratio = rng.uniform(1.0, 1.5, n)
    s3 = rng.uniform(0.05, 0.3, n)
    he1 = rng.uniform(0.03, 0.15, n)
    vdisp = rng.uniform(50.0, 200.0, n)
    template = rng.integers(0, T, n)
    ew = np.exp(rng.uniform(math.log(cfg.ew_min), math.log(cfg.ew_max), n))
    cont_nolines = np.exp(rng.uniform(math.log(3e-19), math.log(3e-18), n))
    level = cfg.noise * np.exp(rng.normal(0.0, cfg.noise_scatter, n))
    slope = rng.uniform(cfg.slope_min, cfg.slope_max, n)
    eps = rng.standard_normal((n, M))
    # -- lines ---------------------------------------------------------------------------------
    k_ha = float(calzetti_klambda(LINES["Halpha"]))
    k_hb = float(calzetti_klambda(LINES["Hbeta"]))
    ebv = np.maximum(2.5 / (k_hb - k_ha) * np.log10(decrement * CASE_B["Hbeta"]), 0.0)
    fl = {k: np.zeros(n) for k in LINE_NAMES}
    fl["Halpha"] = f_ha
    fl["NII6585"] = nii * f_ha
    fl["NII6550"] = fl["NII6585"] / 2.95
    fl["SII6718"] = sii * f_ha * sii_ratio / (1 + sii_ratio)
    fl["SII6733"] = sii * f_ha / (1 + sii_ratio)
    fl["Hbeta"] = f_ha / decrement
    fl["OIII5008"] = o3hb * fl["Hbeta"]
    fl["OIII4960"] = fl["OIII5008"] / 2.98
    fl["OII3727"] = o2 * f_ha / (1 + o2_ratio)
    fl["OII3730"] = o2 * f_ha * o2_ratio / (1 + o2_ratio)
    fl["SIII9533"] = s3 * f_ha
    fl["SIII9071"] = fl["SIII9533"] / 2.44
    fl["HeI10833"] = he1 * f_ha
    fl["Hgamma"] = fl["Hbeta"] * 0.468 * 10 ** (-0.4 * ebv * (calzetti_klambda(LINES["Hgamma"]) - k_hb))
    fl["Hdelta"] = fl["Hbeta"] * 0.259 * 10 ** (-0.4 * ebv * (calzetti_klambda(LINES["Hdelta"]) - k_hb))
    for pa in ("Paalpha", "Pabeta", "Pagamma", "Padelta"):
        fl[pa] = f_ha * CASE_B[pa] * 10 ** (-0.4 * ebv * (calzetti_klambda(LINES[pa]) - k_ha))
    lines_model = np.zeros((n, M))
    ha_prof = np.zeros((n, M))
    zc = z[:, None]
    for name, lam in LINES.items():
        mu = lam * (1 + zc)
        sig = np.hypot(mu / (cfg.resolution * FWHM_SIGMA), mu * vdisp[:, None] / C_KMS)
        prof = pixel_gaussian(lo, hi, mu, sig)
        lines_model += fl[name][:, None] * prof
        if name == "Halpha":
            ha_prof = prof
    # -- continuum -----------------------------------------------------------------------------
    rest = wave[None, :] / (1 + zc)
    cont_all = tpl.at_wavelengths(rest)  # (n, M, T)
    cont = np.take_along_axis(cont_all, template[:, None, None], axis=2)[:, :, 0]
    dust = 10 ** (-0.4 * 0.44 * ebv[:, None] * (calzetti_klambda(rest) - k_ha))
    cont = cont * dust
    ref = tpl.at_wavelengths(np.full(n, LINES["Halpha"]))[np.arange(n), template]
    level_ha = np.where(has, f_ha / (ew * (1 + z)), 0.0)
    scale = np.where(has, level_ha / ref, cont_nolines / np.maximum(cont.mean(axis=1), 1e-300))
    cont = cont * scale[:, None]
    cont_level = np.where(has, level_ha, cont_nolines)
    # -- noise ---------------------------------------------------------------------------------
    sigma = level[:, None] * (wave[None, :] / 15500.0) ** (-slope[:, None])
    model = cont + lines_model
    flux = model + sigma * eps
    ha_snr = f_ha * np.sqrt(np.sum((ha_prof / sigma) ** 2, axis=1))
    lines_snr = np.sqrt(np.sum((lines_model / sigma) ** 2, axis=1))
    cols = {
        "targetid": first_id + np.arange(n), "z": z, "halpha_flux": f_ha, "halpha_snr": ha_snr,
        "lines_snr": lines_snr, "has_lines": has.astype(float), "template": template, "ebv_gas": ebv,
        "vdisp": vdisp, "ew_halpha": np.where(has, ew, 0.0), "cont_level": cont_level,
        "noise_level": level, "noise_slope": slope,
    }
    cols.update({f"flux_{k}": fl[k] for k in LINE_NAMES})
    params = np.stack([np.asarray(cols[c], dtype=np.float64) for c in TRUTH_COLUMNS], axis=1)
    return flux.astype(np.float32), sigma.astype(np.float32), params


def shard_meta(cfg: NispConfig, seed: int, index: int, n_total: int, template_names=None) -> dict:
    """File attributes of one shard (``template_names``: the family's, indexed by the ``template`` column)."""
    conf = asdict(cfg)
    conf.pop("extra", None)
    family = cfg.templates if cfg.templates == PACKAGE_FAMILY else str(Path(cfg.templates).resolve())
    return {"domain": "redshift", "instrument": cfg.instrument(), "seed": int(seed), "shard_index": int(index),
            "n_total": int(n_total), "config": conf, "wave": cfg.wave,
            "templates": {"family": family, "names": list(template_names or [])},
            "priors": {"z": [cfg.zmin, cfg.zmax], "halpha_flux": [cfg.flux_min, cfg.flux_max],
                       "no_line_fraction": cfg.no_line_fraction},
            "noise": {"level": cfg.noise, "scatter": cfg.noise_scatter,
                      "slope": [cfg.slope_min, cfg.slope_max]}}


def _run_description(cfg: NispConfig, n: int, seed: int) -> dict:
    conf = asdict(cfg)
    conf.pop("extra", None)
    return {"kind": "astrolearn.redshift.simulate", "n": int(n), "seed": int(seed), "config": conf}


def prepare_output(out: Path, desc: dict, paths: list[Path], overwrite: bool, mine: list[int] | None = None) -> None:
    """Make ``out`` ready for the shards ``paths`` of the simulation ``desc`` (resume or replace).

    An existing directory is resumed when its ``simulation.json`` equals ``desc``, refused
    otherwise (or when complete) unless ``overwrite``, which deletes its shards and manifest.
    ``mine``: the shard indices of this SLURM array task (None: all); a task replaces only its
    own shards, and a task whose share is already made succeeds (an array resubmitted after a
    failed task).
    """
    manifest = out / "simulation.json"
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    # Hidden files are other array tasks' files being written, not a previous output.
    if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
        if overwrite:
            # An array task replaces its own shards; the manifest is rewritten by each, the same.
            replaced = out.glob("shard-*.h5") if mine is None else [paths[i] for i in mine]
            for p in [*replaced, manifest]:
                p.unlink(missing_ok=True)
        else:
            if not manifest.exists():
                raise UserError(f"{out}: already exists (use --overwrite to replace it)")
            try:
                old = json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError):
                raise UserError(f"{out}: unreadable simulation.json (use --overwrite to replace it)") from None
            if old != json.loads(json.dumps(desc)):
                raise UserError(f"{out}: holds a different simulation (use --overwrite to replace it)")
            if mine is None and all(p.exists() for p in paths):
                raise UserError(f"{out}: already exists and is complete (use --overwrite to replace it)")
    out.mkdir(parents=True, exist_ok=True)
    if not manifest.exists():
        with atomic_write(manifest) as tmp:
            tmp.write_text(json.dumps(desc, indent=1, sort_keys=True))


def simulate(out, n: int, seed: int = 0, cfg: NispConfig | None = None, overwrite: bool = False,
             progress: bool = True, task: tuple[int, int] | None = None) -> list[Path]:
    """Simulate ``n`` spectra into shards ``out/shard-00000.h5``, ...

    Parameters
    ----------
    out : path-like
        Output directory. An existing one is resumed when it holds the same simulation
        (``simulation.json``), refused otherwise unless ``overwrite``.
    n : int
        Number of spectra.
    seed : int
        Master seed; shard i uses ``default_rng([seed, i])``.
    cfg : NispConfig, optional
    overwrite : bool
        Replace an existing output (its shards and ``simulation.json`` are deleted first).
    progress : bool
        Show a tqdm progress bar.
    task : (int, int), optional
        ``(i, k)``: make (and, with ``overwrite``, replace) only the shards of index ``i``
        modulo ``k``; ``k`` such tasks (a SLURM job array) write the files one process would.

    Returns
    -------
    list of Path
        All shard files.
    """
    from tqdm import tqdm

    cfg = cfg or NispConfig()
    cfg.validate()
    if n < 1:
        raise UserError("--n must be >= 1")
    out = Path(out)
    templates = cfg.continuum_templates()  # bad families are refused before anything is written
    desc = _run_description(cfg, n, seed)
    nshards = -(-n // cfg.shard_size)
    paths = [out / SHARD_PATTERN.format(i) for i in range(nshards)]
    mine = None if task is None else list(range(task[0], nshards, task[1]))
    prepare_output(out, desc, paths, overwrite, mine)
    todo = [i for i in (range(nshards) if mine is None else mine) if not paths[i].exists()]
    for i in tqdm(todo, desc="simulate", unit="shard", disable=not progress):
        rng = np.random.default_rng([int(seed), i])
        count = min(cfg.shard_size, n - i * cfg.shard_size)
        flux, noise, params = simulate_batch(cfg, rng, count, first_id=i * cfg.shard_size, templates=templates)
        write_shard(paths[i], {"flux": flux, "noise": noise}, params, TRUTH_COLUMNS,
                    shard_meta(cfg, seed, i, n, templates.names))
    return paths
