"""Optimisers and learning-rate schedulers from the ``optimizer`` and ``scheduler`` sections."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch

from ..errors import UserError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step", "plateau", "onecycle")


def build_optimizer(params: Iterable, cfg: Mapping) -> torch.optim.Optimizer:
    """Optimiser ``cfg["name"]`` over ``params`` (keys as in ``configs/defaults.yaml``)."""
    name = cfg["name"]
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
