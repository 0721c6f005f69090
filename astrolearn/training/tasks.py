"""What a trained network is for: its loss and how its raw output becomes a prediction.

These modules hold the network and the statistics learnt from the training data (target
normalisation, class weights) as buffers, so a checkpoint's state dict restores both. They import
torch only: :func:`load_model` rebuilds one from a Lightning checkpoint without Lightning, which
keeps ``predict`` start-up fast.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UserError
from ..nn import build_network


class TaskModel(nn.Module):
    """A network built from ``config["model"]`` and the names of what it predicts.

    Parameters
    ----------
    config : mapping
        Resolved training configuration (``model`` section and ``seed`` are used).
    input_shape : sequence of int
        One input sample, channels first.
    names : sequence of str
        Regression target names, or class names.

    Notes
    -----
    The weights are initialised from ``config["seed"]`` without touching the global random
    generator, so the same configuration always starts from the same network.
    """

    task = ""

    def __init__(self, config: Mapping, input_shape: Sequence[int], names: Sequence[str]):
        super().__init__()
        self.config = config
        self.names = [str(n) for n in names]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.get("seed", 0))
            self.net = build_network(config["model"], input_shape, len(self.names))
        if self.net.task != self.task:
            raise UserError(f"model.head.type is {self.net.task}, expected {self.task}")
        self.input_shape = self.net.input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw network output."""
        return self.net(x)

    def loss(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss of a batch from its raw output and targets."""
        raise NotImplementedError

    def outputs(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predictions, in physical units, from the raw output."""
        raise NotImplementedError

    def predict(self, x, batch_size: int = 1024) -> dict[str, np.ndarray]:
        """Predict for a stack of inputs, in batches, without gradients.

        Parameters
        ----------
        x : array-like, shape (N, *input_shape)
            Inputs, already transformed as in training.
        batch_size : int
            Samples per forward pass.

        Returns
        -------
        dict of str to ndarray
            See :meth:`outputs` of the task.
        """
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        if tuple(x.shape[1:]) != self.input_shape:
            raise UserError(f"inputs of shape {tuple(x.shape[1:])} given to a model trained on "
                            f"{self.input_shape}")
        device = next(self.parameters()).device
        with torch.inference_mode():
            parts = [self.outputs(self(chunk.to(device))) for chunk in x.split(batch_size)]
        return {key: torch.cat([p[key] for p in parts]).cpu().numpy() for key in parts[0]}


class RegressionModel(TaskModel):
    """Regression of P targets, learnt on targets normalised to zero mean and unit variance.

    With ``model.head.uncertainty``, the network outputs P means and P log-variances trained by
    Gaussian negative log-likelihood; otherwise P values trained by mean squared error.

    ``config["loss"]["nll_beta"]`` > 0 weighs each term of the likelihood by its predicted
    variance to that power (beta-NLL, Seitzer et al. 2022, ICLR): plain NLL lets the network
    buy a hard target off with a large variance and stop learning it; 0.5 is their choice.

    ``config["loss"]["sign_free"]`` names targets whose common sign the input cannot tell (the
    even static modes of an in-focus PSF): the loss of each sample is the smaller of the losses
    against the target and against the target with that group negated, so the network is free to
    answer either sign (see :meth:`align`).

    Parameters
    ----------
    config, input_shape, names
        See :class:`TaskModel`; ``names`` are the P target names.
    target_mean, target_std : array-like of shape (P,), optional
        Target statistics of the training data (placeholders 0 and 1 when restoring a checkpoint).
    """

    task = "regression"

    def __init__(self, config, input_shape, names, target_mean=None, target_std=None):
        super().__init__(config, input_shape, names)
        p = len(self.names)
        mean = torch.zeros(p) if target_mean is None else torch.as_tensor(target_mean, dtype=torch.float32)
        std = torch.ones(p) if target_std is None else torch.as_tensor(target_std, dtype=torch.float32)
        if mean.shape != (p,) or std.shape != (p,) or not bool((std > 0).all()):
            raise ValueError(f"target_mean and target_std must have shape ({p},) and std > 0")
        self.register_buffer("target_mean", mean)
        self.register_buffer("target_std", std)
        sign_free = list(config.get("loss", {}).get("sign_free") or [])
        unknown = sorted(set(sign_free) - set(self.names))
        if unknown:
            raise UserError(f"loss.sign_free names unknown targets {unknown} (targets: {', '.join(self.names)})")
        self.register_buffer("sign_free", torch.tensor([n in sign_free for n in self.names]), persistent=False)
        self.nll_beta = float(config.get("loss", {}).get("nll_beta", 0.0))

    def _split(self, raw):
        return raw.chunk(2, dim=1) if self.net.uncertainty else (raw, None)

    def _per_sample(self, mean, log_var, target):
        z = (target - self.target_mean) / self.target_std
        if log_var is None:
            return ((z - mean) ** 2).mean(dim=1)
        # Written in log-variance: stable without the variance clamping of F.gaussian_nll_loss.
        nll = 0.5 * (log_var + (z - mean) ** 2 * torch.exp(-log_var))
        if self.nll_beta:
            nll = nll * torch.exp(self.nll_beta * log_var.detach())
        return nll.mean(dim=1)

    def _flipped(self, target):
        return torch.where(self.sign_free, -target, target)

    def loss(self, raw, target):
        mean, log_var = self._split(raw)
        loss = self._per_sample(mean, log_var, target)
        if bool(self.sign_free.any()):
            loss = torch.minimum(loss, self._per_sample(mean, log_var, self._flipped(target)))
        return loss.mean()

    def align(self, prediction, target):
        """Predictions (physical units) with the sign-free group negated where that fits ``target`` better."""
        if not bool(self.sign_free.any()):
            return prediction
        flip = self._flipped(prediction)
        closer = (((flip - target) / self.target_std) ** 2).sum(1) < (((prediction - target) / self.target_std) ** 2).sum(1)
        return torch.where(closer[:, None], flip, prediction)

    def outputs(self, raw):
        """``{"mean": (B, P)}``, plus ``"std"`` (B, P) with an uncertainty head."""
        mean, log_var = self._split(raw)
        out = {"mean": mean * self.target_std + self.target_mean}
        if log_var is not None:
            out["std"] = torch.exp(0.5 * log_var) * self.target_std
        return out


class ClassificationModel(TaskModel):
    """Classification into C classes by cross-entropy, optionally class-weighted.

    Parameters
    ----------
    config, input_shape, names
        See :class:`TaskModel`; ``names`` are the C class names.
    class_weights : array-like of shape (C,), optional
        Loss weight of each class (all 1 when omitted).
    """

    task = "classification"

    def __init__(self, config, input_shape, names, class_weights=None):
        super().__init__(config, input_shape, names)
        c = len(self.names)
        weights = torch.ones(c) if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        if weights.shape != (c,) or not bool((weights >= 0).all()):
            raise UserError(f"loss.class_weights must be {c} non-negative numbers, not {weights.tolist()}")
        self.register_buffer("class_weights", weights)
        self.label_smoothing = float(config.get("loss", {}).get("label_smoothing", 0.0))

    def loss(self, raw, target):
        return F.cross_entropy(raw, target, weight=self.class_weights, label_smoothing=self.label_smoothing)

    def outputs(self, raw):
        """``{"probs": (B, C) class probabilities, "label": (B,) most probable class}``."""
        probs = raw.softmax(dim=1)
        return {"probs": probs, "label": probs.argmax(dim=1)}


TASKS = {cls.task: cls for cls in (RegressionModel, ClassificationModel)}

#: Prefix of the task model's parameters in the Lightning module's state dict.
STATE_PREFIX = "model."


def find_checkpoint(path: str | os.PathLike, which: str = "best") -> Path:
    """Checkpoint file of a run directory (``path`` itself when it is a file).

    Parameters
    ----------
    path : path-like
        A run directory written by :func:`astrolearn.training.fit`, or a ``.ckpt`` file.
    which : {"best", "last"}
        The checkpoint with the lowest validation loss, or the latest one.
    """
    path = Path(path)
    if path.is_file():
        return path
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', not {which!r}")
    folder = path / "checkpoints"
    # A run keeps best-epoch=NNN.ckpt and last.ckpt; an exported model the one it ships, named
    # for which it is (best-epoch=NNN.ckpt or last-epoch=NNN.ckpt).
    found = (sorted(folder.glob("best-*.ckpt")) if which == "best" else []) or sorted(folder.glob("last*.ckpt"))
    if not found:
        raise UserError(f"{path}: no trained model (no {folder}/best-*.ckpt or last*.ckpt)")
    return found[-1]


def load_model(path: str | os.PathLike, which: str = "best", map_location="cpu") -> TaskModel:
    """Load a trained model for prediction, without importing Lightning.

    Parameters
    ----------
    path : path-like
        Run directory or checkpoint file (see :func:`find_checkpoint`).
    which : {"best", "last"}
        Which checkpoint of a run directory.
    map_location : str or torch.device
        Where to put the weights.

    Returns
    -------
    RegressionModel or ClassificationModel
        In evaluation mode; ``model.config`` is the run's resolved configuration, ``model.names``
        the target or class names, ``model.input_shape`` the expected sample shape.
    """
    ckpt = find_checkpoint(path, which)
    try:
        # weights_only: plain containers and tensors only, no code run, no Lightning import.
        state = torch.load(ckpt, map_location=map_location, weights_only=True)
        hparams, weights = state["hyper_parameters"], state["state_dict"]
        config = hparams["config"]
        cls = TASKS[config["model"]["head"]["type"]]
    except (OSError, RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as exc:
        raise UserError(f"{ckpt}: not an astrolearn checkpoint ({exc.__class__.__name__}: {exc})") from None
    model = cls(config, hparams["input_shape"], hparams["names"])
    model.load_state_dict({k[len(STATE_PREFIX):]: v for k, v in weights.items() if k.startswith(STATE_PREFIX)})
    return model.eval().to(map_location)
