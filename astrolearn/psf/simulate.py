"""Training-set simulator: PSFAO19 PSFs drawn from priors, with detector noise, in HDF5 shards.

Priors (defaults from LAM's APPLY protocol; override any entry in a YAML config file under
``priors:``). Each entry is ``{dist: uniform|loguniform|fixed, low, high | value}``:

==============  ==========================  =========================================
entry           default                     unit / meaning
==============  ==========================  =========================================
r0_500nm        uniform(0.05, 0.4)          m, Fried parameter at 500 nm
bck             loguniform(1e-3, 5e-2)      rad² m², C at the image wavelength
amp_nm          uniform(80, 390)            nm RMS, converted to A [rad²] at lambda
alpha           uniform(1e-3, 1e-1)         1/m
ratio           uniform(0.5, 2)             -
theta           fixed(0)                    rad
beta            uniform(1.1, 3.0)           -
static_waves    uniform(-0.1, 0.1)          static modes in units of the wavelength
magnitude       uniform(12, 14)             star magnitude (noise)
shift_px        uniform(-0.5, 0.5)          sub-pixel offset of the PSF centre
==============  ==========================  =========================================

Stored truth columns: ``r0`` (m at 500 nm), ``bck``, ``amp``, ``alpha``, ``ratio``, ``theta``,
``beta`` (maoppy's units at the image wavelength), ``stat_1..stat_K`` (nm), ``flux`` (e-),
``background`` (e-, 0 after sky subtraction), ``dx``, ``dy`` (pixels), ``mag``, ``noisy`` (0/1).
Images are in photo-electrons, sky subtracted.

Other settings (``DEFAULT_SIM``): ``noise`` ("default" or "none"), ``noiseless_fraction`` (share
of noiseless PSFs in a noisy set), ``static`` (static aberrations on or off), ``static_free_fraction``
(share of PSFs whose static modes are all zero in a set with static aberrations: an estimator
trained on it also meets aberration-free images), ``shard_size``, ``dtype``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import UserError
from ..io.shards import SHARD_PATTERN, atomic_write, read_meta, write_shard
from .instruments import Instrument
from .model import PSD_NAMES, nm_rms_to_rad2, r0_to_wavelength

DEFAULT_PRIORS = {
    "r0_500nm": {"dist": "uniform", "low": 0.05, "high": 0.4},
    "bck": {"dist": "loguniform", "low": 1e-3, "high": 5e-2},
    "amp_nm": {"dist": "uniform", "low": 80.0, "high": 390.0},
    "alpha": {"dist": "uniform", "low": 1e-3, "high": 1e-1},
    "ratio": {"dist": "uniform", "low": 0.5, "high": 2.0},
    "theta": {"dist": "fixed", "value": 0.0},
    "beta": {"dist": "uniform", "low": 1.1, "high": 3.0},
    "static_waves": {"dist": "uniform", "low": -0.1, "high": 0.1},
    "magnitude": {"dist": "uniform", "low": 12.0, "high": 14.0},
    "shift_px": {"dist": "uniform", "low": -0.5, "high": 0.5},
}

DEFAULT_SIM = {
    "priors": DEFAULT_PRIORS,
    "noise": "default",  # "default" (photon + read noise of the preset) or "none"
    "noiseless_fraction": 0.0,  # fraction of noiseless PSFs mixed into a noisy set
    "static": True,
    "static_free_fraction": 0.0,  # fraction of PSFs without static aberrations in a static set
    "shard_size": 1000,
    "dtype": "float32",
}


def merge_config(base: dict, override: dict | None) -> dict:
    """Deep merge of ``override`` into a copy of ``base`` (unknown top-level keys refused)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if key not in out:
            raise UserError(f"unknown simulation setting {key!r} (known: {', '.join(out)})")
        if isinstance(out[key], dict) and isinstance(value, dict):
            for sub, subval in value.items():
                if sub not in out[key]:
                    raise UserError(f"unknown prior {sub!r} (known: {', '.join(out[key])})")
                out[key][sub] = subval
        else:
            out[key] = value
    return out


def resolve_sim_config(override: dict | None) -> dict:
    """``DEFAULT_SIM`` completed by ``override``, its fractions checked."""
    config = merge_config(DEFAULT_SIM, override)
    for key in ("noiseless_fraction", "static_free_fraction"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise UserError(f"{key.replace('_', '-')} must be a number in [0, 1], got {value!r}")
    return config


def draw(prior: dict, rng: np.random.Generator, size) -> np.ndarray:
    """Samples of one prior entry."""
    kind = prior.get("dist")
    if kind == "uniform":
        return rng.uniform(prior["low"], prior["high"], size)
    if kind == "loguniform":
        return np.exp(rng.uniform(math.log(prior["low"]), math.log(prior["high"]), size))
    if kind == "fixed":
        return np.full(size, float(prior["value"]))
    raise UserError(f"unknown prior distribution {kind!r} (uniform, loguniform, fixed)")


def prior_median(prior: dict) -> float:
    """Median of one prior entry (the fit's starting point: a user has no truth)."""
    kind = prior.get("dist")
    if kind == "uniform":
        return 0.5 * (prior["low"] + prior["high"])
    if kind == "loguniform":
        return math.sqrt(prior["low"] * prior["high"])
    return float(prior["value"])


def column_names(instrument: Instrument, static: bool) -> list[str]:
    stat = instrument.static_names() if static else []
    return list(PSD_NAMES) + stat + ["flux", "background", "dx", "dy", "mag", "noisy"]


def draw_parameters(instrument: Instrument, config: dict, n: int, rng: np.random.Generator) -> np.ndarray:
    """Truth table (n, P) in the stored units (see module docstring)."""
    pri = config["priors"]
    lam = instrument.wavelength_m
    cols = {
        "r0": draw(pri["r0_500nm"], rng, n),
        "bck": draw(pri["bck"], rng, n),
        "amp": nm_rms_to_rad2(draw(pri["amp_nm"], rng, n), lam),
        "alpha": draw(pri["alpha"], rng, n),
        "ratio": draw(pri["ratio"], rng, n),
        "theta": draw(pri["theta"], rng, n),
        "beta": draw(pri["beta"], rng, n),
    }
    k = instrument.n_static if config["static"] else 0
    stat = draw(pri["static_waves"], rng, (n, k)) * instrument.wavelength_um * 1e3
    mag = draw(pri["magnitude"], rng, n)
    dx, dy = draw(pri["shift_px"], rng, n), draw(pri["shift_px"], rng, n)
    noisy = np.ones(n) if config["noise"] != "none" else np.zeros(n)
    if config["noise"] != "none" and config["noiseless_fraction"] > 0:
        noisy = (rng.uniform(size=n) >= config["noiseless_fraction"]).astype(float)
    if k and config["static_free_fraction"] > 0:
        # drawn last so that sets made without this option keep their random streams
        stat[rng.uniform(size=n) < config["static_free_fraction"]] = 0.0
    from .noise import star_electrons

    flux = star_electrons(mag, instrument.detector) if instrument.detector else np.ones(n)
    table = [cols[name] for name in PSD_NAMES] + list(stat.T) + [flux, np.zeros(n), dx, dy, mag, noisy]
    return np.stack(table, axis=1)


def render_unit(model, instrument: Instrument, params: np.ndarray, names: list[str]):
    """Noiseless PSFs of unit flux (n, H, W) of a truth table, a tensor on ``model``'s device and dtype."""
    import torch

    idx = {name: i for i, name in enumerate(names)}
    stat_cols = [idx[s] for s in names if s.startswith("stat_")]
    psd = params[:, [idx[n] for n in PSD_NAMES]].copy()
    psd[:, 0] = r0_to_wavelength(psd[:, 0], instrument.wavelength_m)
    t = lambda a: torch.as_tensor(a, dtype=model.dtype, device=model.pupil.device)  # noqa: E731
    static = t(params[:, stat_cols]) if stat_cols else None
    with torch.no_grad():
        return model(t(psd), static=static, dx=t(params[:, idx["dx"]]), dy=t(params[:, idx["dy"]]))


def render(model, instrument: Instrument, params: np.ndarray, names: list[str], batch: int = 64) -> np.ndarray:
    """Noiseless images (n, H, W) [e-] from a truth table, computed in batches with ``model``."""
    flux = params[:, names.index("flux"), None, None]
    out = np.empty((len(params), instrument.npix, instrument.npix))
    for start in range(0, len(params), batch):
        psf = render_unit(model, instrument, params[start : start + batch], names)
        out[start : start + batch] = psf.double().cpu().numpy() * flux[start : start + batch]
    return out


def shard_metadata(instrument: Instrument, config: dict, seed: int) -> dict:
    """What a simulated set records of how it was made (a shard's ``meta``, less its index)."""
    return {
        "domain": "psf",
        "instrument": instrument.to_dict(),
        "priors": config["priors"],
        "noise": {"model": config["noise"], "noiseless_fraction": config["noiseless_fraction"], **instrument.detector},
        "config": config,
        "seed": int(seed),
        "digest": config_digest(instrument, config, seed),
    }


# Settings added after sets were made: at these values they are left out of the digest, so that
# those sets still resume and match.
_DIGEST_NEUTRAL = {"static_free_fraction": 0.0}


def config_digest(instrument: Instrument, config: dict, seed: int) -> str:
    config = {k: v for k, v in config.items() if k not in _DIGEST_NEUTRAL or v != _DIGEST_NEUTRAL[k]}
    # The header expectations (checked on user frames) do not change a simulated PSF.
    described = {k: v for k, v in instrument.to_dict().items() if k != "header"}
    blob = json.dumps({"instrument": described, "config": config, "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def simulate_shard(instrument: Instrument, config: dict, seed: int, index: int, n: int, path: Path, model=None):
    """Simulate and write shard ``index`` (deterministic in (seed, index))."""
    import torch

    from .model import PsfaoModel
    from .noise import add_noise

    rng = np.random.default_rng([seed, index])
    if model is None:
        model = PsfaoModel(instrument, dtype=getattr(torch, config["dtype"]))
    names = column_names(instrument, config["static"])
    params = draw_parameters(instrument, config, n, rng)
    images = render(model, instrument, params, names)
    noisy = params[:, names.index("noisy")] > 0
    if noisy.any():
        images[noisy] = add_noise(images[noisy], instrument, rng)
    meta = {**shard_metadata(instrument, config, seed), "shard_index": int(index)}
    write_shard(path, {"images": images.astype(np.float32)}, params, names, meta)


def _worker(job):
    instrument_dict, config, seed, index, n, path = job
    import torch

    torch.set_num_threads(1)
    simulate_shard(Instrument.from_dict(instrument_dict), config, seed, index, n, Path(path))
    return n


def simulate(instrument: Instrument, n: int, seed: int, out: Path, config: dict | None = None,
             workers: int = 1, overwrite: bool = False, progress: bool = True,
             task: tuple[int, int] | None = None) -> list[Path]:
    """Simulate ``n`` PSFs into shards under ``out``; resumes an interrupted run.

    Shards already present with the same settings are kept (rerun = resume); a directory made
    with other settings is refused unless ``overwrite``. ``task=(i, k)`` makes only the shards
    of index ``i`` modulo ``k``: ``k`` such tasks (a SLURM job array) write the same files as one
    process, since every shard is drawn from ``(seed, shard index)``. Returns every shard path
    of the set.
    """
    import yaml
    from tqdm import tqdm

    config = resolve_sim_config(config)
    if not config["static"]:
        instrument = instrument.without_static()
    if n <= 0:
        raise UserError("--n must be positive")
    out = Path(out)
    digest = config_digest(instrument, config, seed)
    size = int(config["shard_size"])
    jobs = []
    mine = range(math.ceil(n / size)) if task is None else range(task[0], math.ceil(n / size), task[1])
    for index in mine:
        path = out / SHARD_PATTERN.format(index)
        count = min(size, n - index * size)
        if path.exists():
            meta = read_meta(path)
            if meta.get("digest") == digest and _rows(path) == count:
                continue
            if not overwrite:
                raise UserError(f"{path}: made with other settings (use --overwrite to replace it)")
        jobs.append((instrument.to_dict(), config, seed, index, count, str(path)))
    out.mkdir(parents=True, exist_ok=True)
    for stale in sorted(out.glob("shard-*.h5"))[math.ceil(n / size):]:
        if not overwrite:
            raise UserError(f"{stale}: extra shard from another run (use --overwrite)")
        stale.unlink(missing_ok=True)  # array tasks remove the same files
    resolved = {"instrument": instrument.to_dict(), "n": n, "seed": seed, "simulation": config,
                "astrolearn_version": __version__}
    # Atomic: the tasks of an array write the same file at once.
    with atomic_write(out / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(resolved, sort_keys=False))
    total = n if task is None else sum(min(size, n - i * size) for i in mine)
    done = total - sum(job[4] for job in jobs)
    bar = tqdm(total=total, initial=done, unit="PSF", desc="simulate", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for count in pool.imap_unordered(_worker, jobs):
                bar.update(count)
    else:
        import torch

        from .model import PsfaoModel

        model = PsfaoModel(instrument, dtype=getattr(torch, config["dtype"])) if jobs else None
        for job in jobs:
            simulate_shard(instrument, config, seed, job[3], job[4], Path(job[5]), model=model)
            bar.update(job[4])
    bar.close()
    return [out / SHARD_PATTERN.format(i) for i in range(math.ceil(n / size))]


def _rows(path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        return int(f["params"].shape[0])


def load_sim_config(path: str | os.PathLike | None) -> dict | None:
    """Simulation overrides from a YAML file (``priors:``, ``noise:``, ...)."""
    if path is None:
        return None
    import yaml

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such config file")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of simulation settings")
    return data
