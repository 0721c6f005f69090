"""Online simulation training: each batch drawn from the priors and rendered on the training device.

``psf train --online`` trains the PSF estimator without shards: every training batch is drawn
from the simulation priors, rendered with :class:`~astrolearn.psf.model.PsfaoModel` and given
detector noise on the device that trains (CPU or GPU), then transformed as shard samples are. A
sample is what :func:`~astrolearn.psf.simulate.simulate_shard` writes in a shard (same priors,
noise, noiseless and static-free fractions, float32 images in e-).

Random streams, all from the simulation seed ``S`` (numpy ``default_rng`` keys):

- training: the batch at step ``k`` on DDP rank ``r`` comes from ``(S, 0, r, k)`` alone (truth
  table, then the seed of the torch generator of its noise), so it is the same whatever came
  before: a resumed run continues the stream, and ranks draw disjoint streams. ``k`` counts the
  batches of a rank, ``epoch * steps_per_epoch + i`` (the optimiser step when
  ``trainer.accumulate_grad_batches`` is 1);
- validation: a fixed set of ``val_samples`` PSFs, chunk ``j`` of 256 from ``(S, 1, j)``,
  rendered once per run, so validation metrics compare across epochs and runs of one seed;
- target normalisation: the mean and spread of the targets of 10 000 truth tables from
  ``(S, 2)`` (no rendering).

The data section's ``val_fraction`` and ``num_workers`` do not apply: rendering happens in the
training process, on its device.
"""

from __future__ import annotations

import math
import warnings

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from ..errors import UserError
from ..training.datamodule import batches_done, epoch_now
from .instruments import Instrument
from .learn import PsfTargets, PsfTransform, fit_psf, model_metadata, target_names, training_config
from .noise import add_noise_torch
from .simulate import column_names, draw_parameters, render_unit, resolve_sim_config, shard_metadata

# Lightning warns that an IterableDataset's length can be wrong with several loader workers: the
# stream is drawn whole in the training process, its length (batches per epoch) is exact.
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")

TRAIN, VALIDATION, NORMALISATION = 0, 1, 2  # stream tags of the seed keys
VAL_CHUNK = 256  # validation PSFs rendered per forward pass (and per seed key)
NORMALISATION_SAMPLES = 10_000


class OnlineSimulation:
    """Batches of simulated PSFs, network inputs and targets, a pure function of their seed key.

    Parameters
    ----------
    instrument : Instrument
        Instrument (with its static modes unless ``config["static"]`` is false).
    config : dict or None
        Simulation settings overriding ``DEFAULT_SIM`` (priors, noise, fractions, dtype).
    seed : int
        Simulation seed ``S`` (see the module documentation for the streams).
    layout : {"crop_bin", "full"}
        Network input layout (:class:`~astrolearn.psf.learn.PsfTransform`).
    """

    def __init__(self, instrument: Instrument, config: dict | None, seed: int, layout: str = "crop_bin"):
        self.config = resolve_sim_config(config)
        self.instrument = instrument if self.config["static"] else instrument.without_static()
        self.seed = int(seed)
        self.names = column_names(self.instrument, self.config["static"])
        self.n_static = self.instrument.n_static if self.config["static"] else 0
        self.transform = PsfTransform(layout=layout)
        self.targets = PsfTargets(self.n_static)
        self._models = {}

    def model(self, device):
        """The PSF model on ``device`` (built once per device)."""
        from .model import PsfaoModel

        device = torch.device(device)
        if device not in self._models:
            self._models[device] = PsfaoModel(self.instrument, dtype=getattr(torch, self.config["dtype"]),
                                              device=device)
        return self._models[device]

    def images(self, key, n: int, device="cpu"):
        """``n`` frames (n, H, W) float32 [e-] on ``device`` and their truth table (n, P), from seed key ``key``."""
        rng = np.random.default_rng([self.seed, *key])
        params = draw_parameters(self.instrument, self.config, n, rng)
        noise_seed = int(rng.integers(2**63))
        model = self.model(device)
        images = render_unit(model, self.instrument, params, self.names)
        images = images * torch.as_tensor(params[:, self.names.index("flux"), None, None], dtype=images.dtype,
                                          device=images.device)
        noisy = torch.as_tensor(params[:, self.names.index("noisy")] > 0, device=images.device)
        if bool(noisy.any()):
            generator = torch.Generator(device=images.device).manual_seed(noise_seed)
            images = torch.where(noisy[:, None, None], add_noise_torch(images, self.instrument, generator), images)
        return images.float(), params

    def sample(self, key, n: int, device="cpu"):
        """Network inputs (n, C, h, w) and targets (n, T), float32 on ``device``, from seed key ``key``."""
        images, params = self.images(key, n, device)
        y = torch.as_tensor(self.targets(params, self.names), dtype=torch.float32, device=images.device)
        return self.transform.tensor(images), y

    def batch(self, step: int, rank: int, n: int, device="cpu"):
        """The training batch of ``n`` samples at step ``step`` on rank ``rank``."""
        return self.sample((TRAIN, int(rank), int(step)), n, device)

    def validation_set(self, n: int, device="cpu"):
        """The fixed validation set: the first ``n`` samples of the validation stream, on the CPU."""
        parts = [self.sample((VALIDATION, j), min(VAL_CHUNK, n - j * VAL_CHUNK), device)
                 for j in range(math.ceil(n / VAL_CHUNK))]
        return tuple(torch.cat([p[i] for p in parts]).cpu() for i in range(2))

    def normalisation_targets(self) -> np.ndarray:
        """Targets of the truth tables of the normalisation stream (no rendering)."""
        rng = np.random.default_rng([self.seed, NORMALISATION])
        params = draw_parameters(self.instrument, self.config, NORMALISATION_SAMPLES, rng)
        return self.targets(params, self.names).astype(np.float32)


class _Stream(IterableDataset):
    """One epoch of training batches of one rank; the epoch is read when iteration starts."""

    def __init__(self, simulation: OnlineSimulation, rank: int, steps: int, batch_size: int, device, epoch,
                 done=lambda: 0):
        self.simulation, self.rank, self.steps = simulation, rank, steps
        self.batch_size, self.device, self.epoch, self.done = batch_size, device, epoch, done

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        # done(): batches of an epoch resumed from a mid-epoch checkpoint (SLURM requeue) already trained on
        first = self.epoch() * self.steps
        for step in range(first + self.done(), first + self.steps):
            yield self.simulation.batch(step, self.rank, self.batch_size, self.device)


class OnlineDataModule(L.LightningDataModule):
    """Training batches simulated on the training device, and a fixed simulated validation set.

    Parameters
    ----------
    simulation : OnlineSimulation
        What to simulate.
    samples_per_epoch : int
        Training samples per epoch, all ranks together (each rank draws
        ``ceil(samples_per_epoch / (batch_size x ranks))`` batches).
    val_samples : int
        Size of the validation set.
    batch_size : int
        Samples per batch and rank.
    """

    def __init__(self, simulation: OnlineSimulation, samples_per_epoch: int, val_samples: int, batch_size: int = 64):
        super().__init__()
        for name, value in (("--samples-per-epoch", samples_per_epoch), ("--val-samples", val_samples),
                            ("data.batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{name} must be a positive integer, not {value!r}")
        self.simulation = simulation
        self.samples_per_epoch, self.val_samples, self.batch_size = samples_per_epoch, val_samples, batch_size
        self.target_names = target_names(simulation.n_static)
        self._val = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, channels first."""
        npix = self.simulation.instrument.npix
        return tuple(self.simulation.transform.tensor(torch.ones(1, npix, npix)).shape[1:])

    def train_targets(self) -> np.ndarray:
        """Targets the normalisation statistics are taken from (see the module documentation)."""
        return self.simulation.normalisation_targets()

    def setup(self, stage: str):
        if self._val is None:
            self._val = TensorDataset(*self.simulation.validation_set(self.val_samples, self._device()))

    def train_dataloader(self) -> DataLoader:
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        steps = math.ceil(self.samples_per_epoch / (self.batch_size * world))
        stream = _Stream(self.simulation, rank, steps, self.batch_size, self._device(),
                         lambda: epoch_now(self.trainer) or 0, lambda: batches_done(self.trainer, steps))
        return DataLoader(stream, batch_size=None)  # batches come whole, already on the device

    def val_dataloader(self) -> DataLoader:
        # Under DDP, Lightning splits this sequential loader between the ranks.
        return DataLoader(self._val, batch_size=self.batch_size)

    def _device(self):
        return self.trainer.strategy.root_device if self.trainer else torch.device("cpu")


class SamplesSeen(L.Callback):
    """Logs ``samples_seen`` (training samples drawn so far, all ranks) with the validation metrics.

    The count is kept in the checkpoints, so a resumed run continues it.
    """

    def __init__(self):
        self.seen = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen += len(batch[0]) * trainer.world_size

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            pl_module.log("samples_seen", float(self.seen), rank_zero_only=True)

    def state_dict(self) -> dict:
        return {"seen": self.seen}

    def load_state_dict(self, state_dict: dict):
        self.seen = state_dict["seen"]


def settings(simulation: OnlineSimulation, samples_per_epoch: int, val_samples: int) -> dict:
    """The ``simulation`` section of the run's ``config.yaml``: all it takes to draw the same streams."""
    return {"instrument": simulation.instrument.to_dict(), "seed": simulation.seed,
            "samples_per_epoch": samples_per_epoch, "val_samples": val_samples,
            "normalisation_samples": NORMALISATION_SAMPLES,
            **{k: v for k, v in simulation.config.items() if k != "shard_size"}}


def train_psf_online(instrument: Instrument, sim_config: dict | None, seed: int, config, out_dir, *,
                     samples_per_epoch: int = 50_000, val_samples: int = 2_000, resume=False, overwrite=False,
                     overrides=(), layout="crop_bin", **trainer_options):
    """Train a PSF estimator on batches simulated as it trains; returns the Lightning trainer.

    Parameters
    ----------
    instrument : Instrument
        Instrument to simulate (its static modes are dropped when ``sim_config`` has ``static: false``).
    sim_config : dict or None
        Simulation settings overriding ``DEFAULT_SIM`` (``priors``, ``noise``, fractions, ``static``).
    seed : int
        Simulation seed (training, validation and normalisation streams).
    config, out_dir, resume, overwrite, overrides, layout, trainer_options
        As for :func:`astrolearn.psf.learn.train_psf`.
    samples_per_epoch, val_samples : int
        Training samples per epoch (all ranks) and size of the fixed validation set.

    Raises
    ------
    UserError
        On a bad setting, or when resuming a run made with other simulation settings.
    """
    from pathlib import Path

    from ..config import read_yaml, to_plain

    simulation = OnlineSimulation(instrument, sim_config, seed, layout)
    section = settings(simulation, samples_per_epoch, val_samples)
    config, even = training_config(simulation.instrument, simulation.n_static, config,
                                   [*overrides, {"simulation": section}], out_dir, resume, layout)
    previous = Path(out_dir) / "config.yaml"
    if resume and previous.is_file() and read_yaml(previous).get("simulation") != to_plain(section):
        raise UserError(f"{out_dir}: the simulation settings differ from the run being resumed (see {previous})")
    data = OnlineDataModule(simulation, samples_per_epoch, val_samples, config["data"]["batch_size"])
    meta = shard_metadata(simulation.instrument, simulation.config, seed)
    training = {"data": "online", "samples_per_epoch": samples_per_epoch, "n_val": val_samples,
                "simulation_seed": simulation.seed, "training_seed": config["seed"],
                "init_from": config["init_from"]}
    return fit_psf(config, data, out_dir, model_metadata(simulation.instrument, meta, even, layout, training),
                   resume=resume, overwrite=overwrite, **trainer_options)
