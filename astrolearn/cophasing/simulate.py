"""Petal-mode draws, detector noise and training sets (HDF5 shards, see :mod:`astrolearn.io.shards`).

A simulation is described by a mapping (YAML file of ``cophase simulate --config``), every entry
optional:

.. code-block:: yaml

    optics: {wavelengths_nm: [600, 650, 700]}   # any Optics option (optics.py)
    priors:
      piston_nm: 300        # pistons ~ U(-300, 300) nm
      tiptilt_nm: 150       # tip and tilt ~ U(-150, 150) nm RMS over the petal
      small_fraction: 0.5   # share of draws scaled down by s ~ log-uniform(small_min, 1): the
      small_min: 0.02       #   small residuals met after a first correction
    noise:
      photons: [1.0e4, 1.0e6]   # photo-electrons per image: a value, or [low, high] log-uniform
      read_noise_e: 1.0         # e- RMS per pixel
      background_e: 0.0         # e- per pixel (sky, dark), subtracted before the network sees it
    shard_size: 1000

Shards hold ``images`` (N, C, npix, npix) float32 [e-] (channel 0 in focus, 1 defocused) and the
truth columns ``piston_1..4, tip_1..4, tilt_1..4`` [nm, as drawn: the common piston included]
and ``photons`` [e- per image].
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import UserError
from ..io.shards import SHARD_PATTERN, read_meta, write_shard
from .optics import Optics

DEFAULT_SIM = {
    "optics": {},
    "priors": {"piston_nm": 300.0, "tiptilt_nm": 150.0, "small_fraction": 0.5, "small_min": 0.02},
    "noise": {"photons": [1.0e4, 1.0e6], "read_noise_e": 1.0, "background_e": 0.0},
    "shard_size": 1000,
}


def resolve_sim_config(override: dict | None = None) -> dict:
    """``DEFAULT_SIM`` with ``override`` merged in (unknown keys refused); the optics are checked."""
    out = copy.deepcopy(DEFAULT_SIM)
    for key, value in (override or {}).items():
        if key not in out:
            raise UserError(f"unknown simulation setting {key!r} (known: {', '.join(out)})")
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise UserError(f"simulation setting {key!r} must be a mapping")
            if key != "optics":
                unknown = sorted(set(value) - set(out[key]))
                if unknown:
                    raise UserError(f"unknown {key} setting(s) {', '.join(unknown)} (known: {', '.join(out[key])})")
            out[key].update(value)
        else:
            out[key] = value
    out["optics"] = Optics.from_dict(out["optics"]).to_dict()
    photons = np.atleast_1d(np.asarray(out["noise"]["photons"], dtype=float))
    if len(photons) not in (1, 2) or not (photons > 0).all():
        raise UserError(f"noise.photons must be a positive number or [low, high], not {out['noise']['photons']!r}")
    if out["noise"]["read_noise_e"] < 0 or out["noise"]["background_e"] < 0:
        raise UserError("noise.read_noise_e and noise.background_e must be >= 0")
    if not 0 <= out["priors"]["small_fraction"] <= 1 or not 0 < out["priors"]["small_min"] <= 1:
        raise UserError("priors.small_fraction must be in [0, 1] and priors.small_min in (0, 1]")
    return out


def load_sim_config(path) -> dict | None:
    """The mapping of a simulation YAML file (None without a file)."""
    if path is None:
        return None
    from ..config import read_yaml

    return read_yaml(path)


def draw_modes(priors: dict, n: int, rng: np.random.Generator, n_petals: int = 4) -> np.ndarray:
    """(n, 3 n_petals) modes [nm]: uniform pistons and tip/tilts, a share scaled down (see module doc)."""
    half = np.r_[np.full(n_petals, priors["piston_nm"]), np.full(2 * n_petals, priors["tiptilt_nm"])]
    modes = rng.uniform(-1, 1, (n, 3 * n_petals)) * half
    small = rng.random(n) < priors.get("small_fraction", 0.0)
    scale = np.exp(rng.uniform(math.log(priors.get("small_min", 1.0)), 0.0, n))
    return modes * np.where(small, scale, 1.0)[:, None]


def draw_photons(noise: dict, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) photo-electrons per image: the fixed value, or log-uniform in [low, high]."""
    photons = np.atleast_1d(np.asarray(noise["photons"], dtype=float))
    if len(photons) == 1:
        return np.full(n, photons[0])
    return np.exp(rng.uniform(*np.log(photons), n))


def render(optics: Optics, modes, photons, noise: dict | None, rng: np.random.Generator | None = None,
           device="cpu", batch: int = 512) -> np.ndarray:
    """Images (N, C, npix, npix) [e-] of modes (N, n_modes) [nm], background subtracted.

    Parameters
    ----------
    optics : Optics
    modes : array-like (N, n_modes)
        Mode coefficients [nm].
    photons : float or array-like (N,)
        Photo-electrons per image (each channel gets as many).
    noise : dict or None
        ``read_noise_e``, ``background_e`` (see the module documentation); None: noiseless.
    rng : numpy.random.Generator
        For the noise.
    device : str
        Where the images are computed (``"cuda"`` on a GPU).
    """
    import torch

    modes = np.asarray(modes, dtype=np.float32)
    photons = np.broadcast_to(np.asarray(photons, dtype=np.float64), (len(modes),))
    parts = []
    for start in range(0, len(modes), batch):
        chunk = torch.as_tensor(modes[start:start + batch], device=device)
        parts.append(optics.psf(chunk).cpu().numpy().astype(np.float64))
    images = np.concatenate(parts) * photons[:, None, None, None]
    if noise is not None:
        background = noise["background_e"]
        images = rng.poisson(np.clip(images, 0, None) + background) - background
        images = images + rng.normal(0.0, noise["read_noise_e"], images.shape)
    return images.astype(np.float32)


def column_names(optics: Optics) -> list[str]:
    return [*optics.names, "photons"]


def simulate_shard(config: dict, seed: int, index: int, n: int, path: Path, meta: dict) -> None:
    """Simulate and write shard ``index`` (deterministic in (seed, index))."""
    rng = np.random.default_rng([seed, index])
    optics = Optics.from_dict(config["optics"])
    modes = draw_modes(config["priors"], n, rng, optics.n_petals)
    photons = draw_photons(config["noise"], n, rng)
    images = render(optics, modes, photons, config["noise"], rng)
    write_shard(path, {"images": images}, np.c_[modes, photons], column_names(optics),
                {**meta, "shard_index": int(index)})


def simulate(n: int, seed: int, out, config: dict | None = None, overwrite: bool = False,
             progress: bool = True) -> list[Path]:
    """Simulate ``n`` measurements into shards under ``out``; a rerun resumes an interrupted one.

    Shards already there with the same settings are kept; shards made with other settings are
    refused unless ``overwrite``.
    """
    import yaml
    from tqdm import tqdm

    config = resolve_sim_config(config)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory (--out is a directory of shards)")
    digest = hashlib.sha256(json.dumps([config, seed], sort_keys=True).encode()).hexdigest()[:16]
    size = int(config["shard_size"])
    count = math.ceil(n / size)
    jobs = []
    for index in range(count):
        path = out / SHARD_PATTERN.format(index)
        rows = min(size, n - index * size)
        if path.exists():
            meta = read_meta(path)
            if meta.get("digest") == digest and meta.get("rows") == rows:
                continue
            if not overwrite:
                raise UserError(f"{path}: made with other settings (use --overwrite to replace it)")
        jobs.append((index, rows, path))
    stale = sorted(out.glob("shard-*.h5"))[count:] if out.is_dir() else []
    if stale and not overwrite:
        raise UserError(f"{stale[0]}: extra shard from another run (use --overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    for path in stale:
        path.unlink()
    (out / "config.yaml").write_text(yaml.safe_dump({"command": "cophase simulate", "n": n, "seed": seed,
                                                      "simulation": config, "astrolearn_version": __version__},
                                                     sort_keys=False))
    meta = {"domain": "cophase", "instrument": config["optics"], "priors": config["priors"],
            "noise": config["noise"], "seed": seed, "digest": digest}
    bar = tqdm(total=n, initial=n - sum(j[1] for j in jobs), unit="image", desc="simulate", disable=not progress)
    for index, rows, path in jobs:
        simulate_shard(config, seed, index, rows, path, {**meta, "rows": rows})
        bar.update(rows)
    bar.close()
    return [out / SHARD_PATTERN.format(i) for i in range(count)]
