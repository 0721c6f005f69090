"""Lightning data module over HDF5 shards: fixed train/validation split, seeded shuffling."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ..errors import UserError
from .data import ShardDataset, TargetFn


class ShardDataModule(L.LightningDataModule):
    """Training and validation loaders over the samples of a list of shards.

    Parameters
    ----------
    shards, inputs, target_fn, transform
        See :class:`astrolearn.training.data.ShardDataset`.
    target_names : sequence of str, optional
        Names of the regression targets (columns of the target function's output), or of the
        classes (label ``i`` is ``target_names[i]``).
    batch_size : int
        Samples per batch and process.
    val_fraction : float
        Share of the samples held out for validation, in (0, 1).
    num_workers : int or "auto"
        Data-loader worker processes per training process; ``"auto"``: :func:`auto_workers`.
    seed : int
        Seed of the split and of the shuffling order.

    Notes
    -----
    The training order of epoch ``e`` is a permutation drawn from ``seed + e``, split between
    ranks as ``DistributedSampler`` does (rank ``r`` of ``n`` takes every ``n``-th sample from
    ``r``). It does not depend on any global random state, so a resumed run sees the same
    batches as an uninterrupted one, and one process with batch ``n*b`` sees the same samples per
    step as ``n`` DDP ranks with batch ``b``.
    """

    def __init__(self, shards, inputs: str | Sequence[str], target_fn: TargetFn, *,
                 target_names: Sequence[str] | None = None, transform: Callable | None = None,
                 batch_size: int = 64, val_fraction: float = 0.1, num_workers: int | str = 0, seed: int = 0):
        super().__init__()
        if not _is_int(batch_size) or batch_size < 1:
            raise UserError(f"data.batch_size must be a positive integer, not {batch_size!r}")
        if num_workers != "auto" and (not _is_int(num_workers) or num_workers < 0):
            raise UserError(f"data.num_workers must be an integer >= 0 or auto, not {num_workers!r}")
        if not 0 < val_fraction < 1:
            raise UserError(f"data.val_fraction must be in (0, 1), not {val_fraction!r}")
        self.dataset = ShardDataset(shards, inputs, target_fn, transform)
        if self.dataset.targets is None:
            raise ValueError("a training data module needs a target function")
        n = len(self.dataset)
        n_val = int(round(val_fraction * n))
        if not 0 < n_val < n:
            raise UserError(f"{n} samples cannot be split with data.val_fraction={val_fraction}")
        order = np.random.default_rng(seed).permutation(n)
        # Sorted: the sampler shuffles anyway, and ordered indices read the shards in order.
        self.val_indices = np.sort(order[:n_val])
        self.train_indices = np.sort(order[n_val:])
        self.target_names = None if target_names is None else [str(name) for name in target_names]
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self._input_shape = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample as the network sees it, channels first."""
        if self._input_shape is None:
            self._input_shape = self.dataset.sample_shape
            self.dataset.close()  # workers open their own handles
        return self._input_shape

    def train_targets(self) -> np.ndarray:
        """Targets of the training split (for normalisation statistics and class weights)."""
        return self.dataset.targets[self.train_indices]

    def train_dataloader(self) -> DataLoader:
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        train = Subset(self.dataset, self.train_indices)
        sampler = ResumingSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        sampler.epoch_now = lambda: epoch_now(self.trainer)
        sampler.batches_done = lambda n_batches: batches_done(self.trainer, n_batches)
        sampler.batch_size = self.batch_size
        return self._loader(train, sampler)

    def val_dataloader(self) -> DataLoader:
        # Under DDP, Lightning splits this sequential loader between the ranks.
        return self._loader(Subset(self.dataset, self.val_indices), None)

    def _loader(self, subset, sampler) -> DataLoader:
        on_gpu = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        workers = self.num_workers
        if workers == "auto":
            local = self.trainer.num_devices if self.trainer is not None else 1
            workers = auto_workers(on_gpu, local)
        # Pinned memory: asynchronous copies to the GPU; persistent workers: no restart per epoch.
        return DataLoader(subset, batch_size=self.batch_size, sampler=sampler, num_workers=workers,
                          persistent_workers=workers > 0, pin_memory=on_gpu)


class ResumingSampler(DistributedSampler):
    """``DistributedSampler`` that, in an epoch resumed from a mid-epoch checkpoint, skips what was trained on.

    The order of an epoch depends on (seed, epoch) only, so the batches left are those an
    uninterrupted run trains on next: a run checkpointed at SIGUSR1 (SLURM's time limit) and
    resumed sees each sample once per epoch, in the same order. ``epoch_now()`` and
    ``batches_done(n_batches)`` (see :func:`epoch_now`, :func:`batches_done`) are asked when
    the epoch's iterator is made.
    """

    epoch_now = None
    batches_done = staticmethod(lambda n_batches: 0)
    batch_size = 1

    def __iter__(self):
        epoch = None if self.epoch_now is None else self.epoch_now()
        if epoch is not None:  # outside a trainer, set_epoch's
            self.set_epoch(epoch)
        indices = list(super().__iter__())
        done = self.batches_done(math.ceil(len(indices) / self.batch_size))
        return iter(indices[done * self.batch_size:])


def epoch_now(trainer) -> int | None:
    """The epoch a training loader's iterator is made for.

    Not ``trainer.current_epoch``: in a run resumed from a checkpoint saved at an epoch's end,
    that still counts the finished epoch while Lightning makes the next one's iterator (and,
    with loader workers, draws its first indices) before calling ``set_epoch``; the count of
    epochs whose training was processed is the next epoch there, and the current one elsewhere.
    ``None`` without a trainer.
    """
    return None if trainer is None else trainer.fit_loop.epoch_progress.current.processed


def batches_done(trainer, n_batches: int) -> int:
    """Batches of the current epoch already trained on when it resumes from a checkpoint saved in its middle; else 0.

    Lightning restores its count of the epoch's batches from the checkpoint and then asks the
    loader for the rest only; at an epoch's start the count is 0, or the whole epoch when
    resuming from a checkpoint saved at its end.
    """
    done = 0 if trainer is None else trainer.fit_loop.epoch_loop.batch_progress.current.completed
    return done if 0 < done < n_batches else 0


def auto_workers(on_gpu: bool, processes_per_node: int = 1) -> int:
    """Data-loader workers per training process chosen from the CPU cores this process may use.

    On a GPU, loading (HDF5 reads, the input transform) is the bottleneck: every core of the
    process's share but one (which feeds the GPU), at most 8. On CPU the training takes the
    cores and reading is a small part of a step: none (a worker would cost its start and
    memory in every run, small test runs included). The share is the
    cores of this process (``sched_getaffinity``: SLURM's ``--cpus-per-task`` where the
    cluster binds tasks to cores), or at most ``SLURM_CPUS_PER_TASK``, divided among the
    ``processes_per_node`` training processes where they all see the same cores.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        cores = min(cores, int(os.environ["SLURM_CPUS_PER_TASK"]))
    elif processes_per_node > 1:
        cores //= processes_per_node
    return max(0, min(8, cores - 1)) if on_gpu else 0


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
