"""Optimisers and learning-rate schedulers from the ``optimizer`` and ``scheduler`` sections."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch

from ..errors import UserError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step", "plateau", "onecycle")


def build_optimizer(params: Iterable, cfg: Mapping, lr: float | None = None) -> torch.optim.Optimizer:
    """Optimiser ``cfg["name"]`` over ``params`` (keys as in ``configs/defaults.yaml``; ``lr``: instead of ``cfg["lr"]``)."""
    name = cfg["name"]
    cfg = {**cfg, "lr": cfg["lr"] if lr is None else lr}
    try:
        if name == "adam":
            return torch.optim.Adam(params, lr=cfg["lr"], betas=tuple(cfg["betas"]), weight_decay=cfg["weight_decay"])
        if name == "adamw":
            return torch.optim.AdamW(params, lr=cfg["lr"], betas=tuple(cfg["betas"]), weight_decay=cfg["weight_decay"])
        if name == "sgd":
            return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["nesterov"],
                                   weight_decay=cfg["weight_decay"])
    except (ValueError, TypeError) as exc:
        raise UserError(f"optimizer: {exc}") from None
    raise UserError(f"optimizer.name must be one of {', '.join(OPTIMIZERS)}, not {name!r}")


LR_SCALINGS = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}


def scaled_lr(cfg: Mapping, batch_size: int, global_batch: int) -> float:
    """Learning rate of the ``optimizer`` section ``cfg`` for ``global_batch`` samples per step.

    ``cfg["lr"]`` times ``(global_batch / lr_batch) ** p``, with p = 0, 1/2 or 1 for
    ``lr_scaling`` none, sqrt or linear, and ``lr_batch`` (default ``batch_size``, one process)
    the global batch ``lr`` was chosen for.
    """
    scaling = cfg.get("lr_scaling", "none")
    if scaling not in LR_SCALINGS:
        raise UserError(f"optimizer.lr_scaling must be one of {', '.join(LR_SCALINGS)}, not {scaling!r}")
    reference = cfg.get("lr_batch") or batch_size
    if not isinstance(reference, int) or isinstance(reference, bool) or reference < 1:
        raise UserError(f"optimizer.lr_batch must be a positive integer, not {reference!r}")
    return cfg["lr"] * (global_batch / reference) ** LR_SCALINGS[scaling]


def build_scheduler(optimizer, cfg: Mapping, max_epochs: int, total_steps: Callable[[], int],
                    monitor: str) -> dict | None:
    """Lightning ``lr_scheduler`` configuration for scheduler ``cfg["name"]`` (None for ``none``).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        The optimiser to schedule.
    cfg : mapping
        The ``scheduler`` section.
    max_epochs : int
        Length of a cosine schedule.
    total_steps : callable
        Returns the optimiser steps of the whole run, for one-cycle (scheduled per step); only
        called then, since Lightning estimates it by loading the training data.
    monitor : str
        Logged metric that ``plateau`` watches.
    """
    name = cfg["name"]
    if name not in SCHEDULERS:
        raise UserError(f"scheduler.name must be one of {', '.join(SCHEDULERS)}, not {name!r}")
    sched = torch.optim.lr_scheduler
    try:
        if name == "none":
            return None
        if name == "cosine":
            if not max_epochs or max_epochs < 1:
                raise UserError("scheduler cosine needs a finite trainer.max_epochs")
            return {"scheduler": sched.CosineAnnealingLR(optimizer, T_max=max_epochs, eta_min=cfg["eta_min"]),
                    "interval": "epoch"}
        if name == "step":
            return {"scheduler": sched.StepLR(optimizer, step_size=cfg["step_size"], gamma=cfg["gamma"]),
                    "interval": "epoch"}
        if name == "plateau":
            return {"scheduler": sched.ReduceLROnPlateau(optimizer, mode="min", factor=cfg["factor"],
                                                         patience=cfg["patience"]),
                    "interval": "epoch", "monitor": monitor}
        max_lr = [group["lr"] for group in optimizer.param_groups]
        return {"scheduler": sched.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps(),
                                              pct_start=cfg["pct_start"]),
                "interval": "step"}
    except (ValueError, TypeError) as exc:
        raise UserError(f"scheduler {name}: {exc}") from None
