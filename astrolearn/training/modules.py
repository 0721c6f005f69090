"""Lightning modules for regression and classification, and :func:`build_module`.

A module wraps a task model (:mod:`astrolearn.training.tasks`) under the attribute ``model``:
the task model owns the network, the loss and the target normalisation, the Lightning module
the optimisation and the metrics. Checkpoints store the resolved configuration, the input
shape and the target/class names as hyper-parameters, which is all
:func:`astrolearn.training.load_model` needs to rebuild the task model without Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning as L
import numpy as np
from torchmetrics import MeanAbsoluteError
from torchmetrics.classification import MulticlassAccuracy

from ..errors import UserError
from ..nn import head_size
from .optim import build_optimizer, build_scheduler, scaled_lr
from .settings import MONITOR, resolve_config
from .tasks import ClassificationModel, RegressionModel


class _TaskModule(L.LightningModule):
    """Steps, logging and optimisation shared by the task modules."""

    def forward(self, x):
        return self.model(x)

    def _step(self, batch, stage):
        x, y = batch
        raw = self.model(x)
        loss = self.model.loss(raw, y)
        # The validation loss (MONITOR) picks checkpoints and stops early: averaged over ranks.
        self.log(f"{stage}/loss", loss, prog_bar=True, on_step=stage == "train", on_epoch=True,
                 sync_dist=stage == "val", batch_size=len(x))
        return raw, y, loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")[2]

    def validation_step(self, batch, batch_idx):
        raw, y, _ = self._step(batch, "val")
        self._update_metrics(raw, y)

    def predict_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.model.outputs(self.model(x))

    def configure_optimizers(self):
        config = self.hparams.config
        batch = config["data"]["batch_size"]
        global_batch = batch * self.trainer.world_size * self.trainer.accumulate_grad_batches
        optimizer = build_optimizer(self.parameters(), config["optimizer"],
                                    lr=scaled_lr(config["optimizer"], batch, global_batch))
        scheduler = build_scheduler(optimizer, config["scheduler"], self.trainer.max_epochs,
                                    lambda: self.trainer.estimated_stepping_batches, MONITOR)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _update_metrics(self, raw, y):
        raise NotImplementedError


class RegressionModule(_TaskModule):
    """Regression of the targets ``names`` (see :class:`~astrolearn.training.tasks.RegressionModel`).

    Logs ``train/loss``, ``val/loss``, the validation mean absolute error of each target in its
    physical unit (``val/mae/<name>``, sign-free targets modulo their common sign) and
    ``val/mae_norm``, their mean in units of the target standard deviations.

    Parameters
    ----------
    config : mapping
        Resolved training configuration.
    input_shape : sequence of int
        One input sample, channels first.
    names : sequence of str
        Target names.
    target_mean, target_std : array-like, optional
        Target statistics of the training split (restored from the checkpoint when omitted).
    """

    def __init__(self, config: Mapping, input_shape: Sequence[int], names: Sequence[str],
                 target_mean=None, target_std=None):
        super().__init__()
        # The statistics live in the state dict (buffers), not among the hyper-parameters.
        self.save_hyperparameters(ignore=["target_mean", "target_std"])
        self.model = RegressionModel(config, input_shape, names, target_mean, target_std)
        self.val_mae = MeanAbsoluteError(num_outputs=len(names))

    def _update_metrics(self, raw, y):
        self.val_mae.update(self.model.align(self.model.outputs(raw)["mean"], y), y)

    def on_validation_epoch_end(self):
        mae = self.val_mae.compute().reshape(-1)
        self.val_mae.reset()
        # torchmetrics has already combined the ranks; sync_dist averages equal values, and
        # tells Lightning that they are global.
        self.log_dict({f"val/mae/{name}": value for name, value in zip(self.model.names, mae)}, sync_dist=True)
        self.log("val/mae_norm", (mae / self.model.target_std).mean(), sync_dist=True)


class ClassificationModule(_TaskModule):
    """Classification into the classes ``names`` (see :class:`~astrolearn.training.tasks.ClassificationModel`).

    Logs ``train/loss``, ``val/loss``, the validation accuracy ``val/acc`` and the recall of
    each class ``val/recall/<name>`` (the fraction of its samples classified correctly).

    Parameters
    ----------
    config : mapping
        Resolved training configuration.
    input_shape : sequence of int
        One input sample, channels first.
    names : sequence of str
        Class names; label ``i`` is class ``names[i]``.
    class_weights : array-like, optional
        Cross-entropy weight of each class (restored from the checkpoint when omitted).
    """

    def __init__(self, config: Mapping, input_shape: Sequence[int], names: Sequence[str], class_weights=None):
        super().__init__()
        self.save_hyperparameters(ignore=["class_weights"])
        self.model = ClassificationModel(config, input_shape, names, class_weights)
        self.val_acc = MulticlassAccuracy(num_classes=len(names), average="micro")
        self.val_recall = MulticlassAccuracy(num_classes=len(names), average=None)

    def _update_metrics(self, raw, y):
        self.val_acc.update(raw, y)
        self.val_recall.update(raw, y)

    def on_validation_epoch_end(self):
        # Global values already (see RegressionModule.on_validation_epoch_end).
        self.log("val/acc", self.val_acc.compute(), prog_bar=True, sync_dist=True)
        recall = self.val_recall.compute()
        self.log_dict({f"val/recall/{name}": value for name, value in zip(self.model.names, recall)},
                      sync_dist=True)
        self.val_acc.reset()
        self.val_recall.reset()


def build_module(config, datamodule) -> RegressionModule | ClassificationModule:
    """The task module that ``config`` describes, sized and normalised from the training data.

    Parameters
    ----------
    config : path-like or mapping
        Training configuration (resolved here). ``model.head.type`` picks the task.
    datamodule : ShardDataModule
        Provides the input shape, the training targets and, optionally, their names.

    Returns
    -------
    RegressionModule or ClassificationModule
        Regression targets are normalised with the mean and standard deviation of the training
        split; classification uses ``loss.class_weights`` (``balanced``: inverse frequency of
        each class in the training split).
    """
    config = resolve_config(config)
    spec = config["model"]
    task = (spec.get("head") or {}).get("type")
    targets = datamodule.train_targets()
    wanted = head_size(spec)
    if task == "regression":
        if targets.dtype.kind != "f":
            raise UserError("model.head.type is regression but the target function gives class labels")
        names = _names(spec["head"].get("outputs"), datamodule.target_names, targets.shape[1], "t")
        std = targets.std(axis=0)
        # A constant target cannot be learnt anyway: leave it unscaled instead of dividing by 0.
        return RegressionModule(config, datamodule.input_shape, names, targets.mean(axis=0),
                                np.where(std > 0, std, 1.0))
    if task == "classification":
        if targets.dtype.kind not in "iu":
            raise UserError("model.head.type is classification but the target function gives float values")
        count = wanted or (len(datamodule.target_names) if datamodule.target_names else int(targets.max()) + 1)
        names = _names(spec["head"].get("classes"), datamodule.target_names, count, "class")
        if targets.min() < 0 or targets.max() >= len(names):
            raise UserError(f"class labels must lie in 0..{len(names) - 1}, found {targets.min()}..{targets.max()}")
        return ClassificationModule(config, datamodule.input_shape, names,
                                    _class_weights(config["loss"]["class_weights"], targets, len(names)))
    raise UserError("model.head.type must be regression or classification")


def _names(from_head, from_data, count, prefix):
    """Target or class names: the head's list, else the data module's, else numbered."""
    names = from_head if isinstance(from_head, (list, tuple)) else from_data
    if names is None:
        return [f"{prefix}{i}" for i in range(count)]
    if len(names) != count:
        raise UserError(f"{len(names)} names ({', '.join(map(str, names))}) for {count} targets or classes")
    return [str(name) for name in names]


def _class_weights(setting, labels, n_classes):
    if setting is None:
        return None
    if setting == "balanced":
        counts = np.bincount(labels, minlength=n_classes)
        # n / (C * count): weight 1 for every class when balanced; an absent class gets 0.
        return np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)
    if isinstance(setting, (list, tuple)):
        return np.asarray(setting, dtype=float)
    raise UserError(f"loss.class_weights must be null, balanced or a list, not {setting!r}")
