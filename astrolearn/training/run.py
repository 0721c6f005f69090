"""``fit``: train a task module in a run directory, with checkpoints, logs and resumption.

A run directory holds::

    config.yaml               resolved configuration, written before training starts
    checkpoints/best-*.ckpt   lowest validation loss so far
    checkpoints/last.ckpt     end of the latest epoch (what --resume continues from)
    checkpoints/hpc_ckpt_N.ckpt  saved by a SLURM job at SIGUSR1 before it requeues itself
                              (astrolearn/hpc/requeue.py; its restart, or --resume, continues
                              from it when it is newer than last.ckpt)
    csv/version_*/            metrics.csv, one version per (re)start
    tensorboard/              TensorBoard events (one run, continued on resume)

Lightning is imported inside :func:`fit` only: importing it takes seconds. Its banner (GPU
available...), tips and model-summary table are silenced during :func:`fit` (through its
loggers' level); :func:`fit` prints one line on the model instead and, at the end, one line
saying why training stopped and which epoch was best (:func:`stop_reason`).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from ..config import dump_config, read_yaml, to_plain
from ..errors import UserError
from ..hpc.slurm import requeued, trainer_layout
from .settings import MONITOR, resolve_config

CONFIG_FILE = "config.yaml"
_RUN_ARTEFACTS = (CONFIG_FILE, "checkpoints", "csv", "tensorboard")
_DDP_START = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork", "ddp_notebook": "fork"}
#: Loggers whose INFO records are Lightning's banner, tips and summaries (warnings still show).
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


def fit(config, datamodule, module, out_dir, *, resume: bool = False, overwrite: bool = False,
        accelerator=None, devices=None, num_nodes=None, strategy=None, precision=None,
        max_epochs=None, callbacks: Sequence = (), on_ready=None):
    """Train ``module`` on ``datamodule`` and keep the results in ``out_dir``.

    Parameters
    ----------
    config : path-like or mapping
        Training configuration; the one ``module`` was built from (see :func:`build_module`).
    datamodule : lightning.LightningDataModule
        Usually a :class:`~astrolearn.training.datamodule.ShardDataModule`.
    module : RegressionModule or ClassificationModule
        The task module to train.
    out_dir : path-like
        Run directory (layout in the module documentation). A start that fails before training
        begins (a refused setting, Ctrl+C) leaves it as it was.
    resume : bool
        Continue from ``out_dir/checkpoints/last.ckpt`` (weights, optimiser, scheduler, epoch), or
        from the newer ``hpc_ckpt_N.ckpt`` that a SLURM job saved when signalled. ``max_epochs``
        counts the epochs of the whole run, so raise it to train longer. A requeued SLURM job
        (``SLURM_RESTART_COUNT`` > 0) resumes its own run without being asked.
    overwrite : bool
        Without ``resume``, replace a previous run in ``out_dir`` instead of refusing to start.
    accelerator, devices, num_nodes, strategy, precision, max_epochs : optional
        Override the ``trainer`` section of ``config`` (``precision="16-mixed"`` or
        ``"bf16-mixed"`` for mixed precision on GPU; ``strategy="ddp"`` for several devices).
    callbacks : sequence of lightning callbacks
        Added to the checkpoint, early-stopping and learning-rate callbacks.
    on_ready : callable, optional
        Called without arguments on global rank 0 once ``out_dir`` is accepted and prepared, just
        before training: to write a task's own files there (a refused run leaves nothing behind).

    Returns
    -------
    lightning.Trainer
        After training: ``trainer.checkpoint_callback.best_model_path``, ``trainer.callback_metrics``.

    Raises
    ------
    UserError
        When ``out_dir`` holds a previous run (without ``resume`` or ``overwrite``), when there is
        nothing to resume, or when resuming with another ``model`` section.
    KeyboardInterrupt
        After Ctrl+C, once Lightning has stopped cleanly; ``resume=True`` then continues from the
        last completed epoch.

    Notes
    -----
    Rank 0 prints a line on the model before training and :func:`stop_reason` after it (also
    when interrupted).

    In a SLURM step of several tasks (``srun``, as ``astrolearn submit`` runs), ``num_nodes``
    and ``devices`` default to the step's nodes and tasks per node, and the strategy to DDP.

    Only global rank 0 checks and prepares ``out_dir``: processes started by Lightning's ``ddp``
    launcher run this function again after rank 0 has written ``config.yaml``.
    """
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from .guard import StartGuard

    given = dict(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                 precision=precision, max_epochs=max_epochs)
    given = {k: v for k, v in given.items() if v is not None}
    config = resolve_config(config, [{"trainer": {**_slurm_layout(config, given), **given}}])
    if to_plain(module.hparams["config"]["model"]) != to_plain(config["model"]):
        raise ValueError("the module was built from another model configuration than the one given to fit")
    # Checkpoints then carry the resolved configuration, as config.yaml does.
    module.hparams["config"] = config
    t = config["trainer"]
    out_dir = Path(out_dir)
    last = out_dir / "checkpoints" / "last.ckpt"
    if requeued() and not resume:
        # The same command restarted by SLURM after a requeue: it continues its own run.
        resume, overwrite = _latest_checkpoint(out_dir) is not None, True

    L.seed_everything(config["seed"], workers=True, verbose=False)
    checkpoint = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="best-{epoch:03d}", monitor=MONITOR,
                                 mode="min", save_top_k=1)
    # A second callback writes last.ckpt after every epoch: since Lightning 2.6, save_last=True
    # above would only copy the best one, and --resume would go back to the last improvement.
    last_checkpoint = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename=last.stem, monitor=None,
                                      save_top_k=1, enable_version_counter=False)
    all_callbacks = [checkpoint, last_checkpoint, *callbacks]
    if t["patience"]:
        all_callbacks.append(EarlyStopping(monitor=MONITOR, mode="min", patience=t["patience"]))
    if config["scheduler"]["name"] != "none":
        all_callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    guard = StartGuard(out_dir)
    all_callbacks.append(guard.callback)
    if "SLURM_JOB_ID" in os.environ:
        from ..hpc.requeue import RequeueOnSignal

        all_callbacks.append(RequeueOnSignal(out_dir / "checkpoints"))
    loggers = [
        # CSV: a new version per start, since Lightning would truncate an existing metrics.csv.
        CSVLogger(out_dir, name="csv"),
        # TensorBoard: one folder, so a resumed run continues the same curves.
        TensorBoardLogger(out_dir, name="tensorboard", version="", default_hp_metric=False),
    ]
    with _quiet_lightning():
        try:
            trainer = L.Trainer(
                default_root_dir=out_dir, accelerator=t["accelerator"], devices=t["devices"],
                num_nodes=t["num_nodes"], strategy=_strategy(t["strategy"], t["process_group_timeout"]),
                plugins=_plugins(t["devices"]), precision=t["precision"], max_epochs=t["max_epochs"],
                gradient_clip_val=t["gradient_clip_val"], accumulate_grad_batches=t["accumulate_grad_batches"],
                log_every_n_steps=t["log_every_n_steps"], deterministic=t["deterministic"],
                callbacks=all_callbacks, logger=loggers, enable_progress_bar=True, enable_model_summary=False,
            )
        except (MisconfigurationException, ValueError) as exc:
            raise UserError(f"trainer: {exc}") from None
        if config["init_from"] and not resume:
            _load_initial_weights(module, config["init_from"], config["model"])
        sigint = signal.getsignal(signal.SIGINT)
        try:
            if trainer.global_rank == 0:
                _prepare_run_dir(out_dir, config, resume, overwrite, guard.set_aside)
                if on_ready is not None:
                    on_ready()
                n_params = sum(p.numel() for p in module.parameters() if p.requires_grad)
                device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
                print(f"training {type(module.model).__name__} ({n_params:,} trainable parameters) on "
                      f"{trainer.num_devices * trainer.num_nodes} {device} device(s)", flush=True)
            try:
                trainer.fit(module, datamodule=datamodule, ckpt_path=_latest_checkpoint(out_dir) if resume else None)
            except SystemExit:
                # Lightning turns Ctrl+C into sys.exit(1) after a graceful shutdown, leaving Ctrl+C
                # ignored: restore it and report the interruption as such, so that the command line
                # can say how to resume.
                if trainer.interrupted:
                    signal.signal(signal.SIGINT, sigint)
                    _say_why_stopped(trainer, checkpoint)
                    raise KeyboardInterrupt from None
                raise
        except BaseException:
            if trainer.global_rank == 0:
                guard.undo()
            raise
    if trainer.global_rank == 0:
        guard.done()
    _say_why_stopped(trainer, checkpoint)
    return trainer


def stop_reason(trainer, best_checkpoint) -> str:
    """Why training stopped and which epoch was best, in one line.

    Epochs are counted from 0, as in Lightning's progress bar, ``metrics.csv`` and the checkpoint
    names, e.g. "stopped: early stopping at epoch 7 (no improvement of val/loss for 3 epochs);
    best epoch 4 (val/loss=0.1234, best-epoch=004.ckpt)".

    Parameters
    ----------
    trainer : lightning.Trainer
        After ``trainer.fit``.
    best_checkpoint : lightning.pytorch.callbacks.ModelCheckpoint
        The callback keeping the checkpoint of the lowest ``MONITOR``.
    """
    from lightning.pytorch.callbacks import EarlyStopping
    from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

    early = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    reason = early.stopping_reason if early is not None else EarlyStoppingReason.NOT_STOPPED
    if trainer.interrupted:
        why = f"interrupted during epoch {trainer.current_epoch}"
    elif reason == EarlyStoppingReason.PATIENCE_EXHAUSTED:
        why = (f"early stopping at epoch {early.stopped_epoch} (no improvement of {MONITOR} for {early.patience} "
               "epoch(s))")
    elif reason == EarlyStoppingReason.NON_FINITE_METRIC:
        why = f"early stopping at epoch {early.stopped_epoch} ({MONITOR} is not finite)"
    elif reason != EarlyStoppingReason.NOT_STOPPED:
        why = f"early stopping at epoch {early.stopped_epoch} ({early.stopping_reason_message})"
    elif trainer.max_epochs is not None and 0 <= trainer.max_epochs <= trainer.current_epoch:
        why = f"reached max_epochs={trainer.max_epochs}"
    elif trainer.current_epoch > 0:
        why = f"after epoch {trainer.current_epoch - 1}"
    else:  # the epochs ran in processes the strategy spawned (ddp_spawn): their count stayed there
        why = "training ended"
    name = Path(best_checkpoint.best_model_path).name
    found = re.search(r"epoch=(\d+)", name)
    if not found:
        return f"stopped: {why}; no epoch completed with a finite {MONITOR}"
    best = best_checkpoint.best_model_score
    score = "" if best is None else f"{MONITOR}={float(best):.4g}, "
    return f"stopped: {why}; best epoch {int(found.group(1))} ({score}{name})"


def _say_why_stopped(trainer, best_checkpoint) -> None:
    if trainer.global_rank == 0:
        # An interruption leaves the progress bar's line open: start a new one.
        gap = "\n" if trainer.interrupted and trainer.progress_bar_callback is not None else ""
        print(gap + stop_reason(trainer, best_checkpoint), flush=True)


@contextmanager
def _quiet_lightning():
    """Raise Lightning's loggers to WARNING (banner, tips, summaries off) for the block.

    Warnings that say nothing about the user's run are dropped too: Lightning's own use of a
    deprecated torch API, per-step logging that small data sets cannot fill (the metrics are
    logged per epoch as well), srun being installed (a SLURM login node) but not used, and
    resuming mid-epoch with loaders that Lightning cannot see resume (ours do).
    """
    saved = {name: logging.getLogger(name).level for name in _LIGHTNING_LOGGERS}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
            warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the "
                                    r"logging interval")
            # On a SLURM login node without srun: a run of its own (astrolearn submit adds srun).
            warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system")
            # Our loaders skip what a mid-epoch checkpoint had trained on (datamodule.batches_done).
            warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch")
            for name in _LIGHTNING_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _load_initial_weights(module, source, model_section):
    """Start ``module`` from the best weights of run (or checkpoint) ``source``."""
    import torch

    from .tasks import find_checkpoint

    ckpt = find_checkpoint(source)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    if to_plain(state["hyper_parameters"]["config"]["model"]) != to_plain(model_section):
        raise UserError(f"{ckpt}: init_from has another model section than this run")
    try:
        module.load_state_dict(state["state_dict"])
    except RuntimeError as exc:  # other outputs (targets, classes) or input shape
        detail = str(exc).strip().splitlines()[-1].strip()
        raise UserError(f"{ckpt}: init_from weights do not fit this run's network ({detail})") from None


def _strategy(name, timeout_s):
    """DDP strategies get a process-group timeout: a rank that never comes must not hang the job."""
    if name not in _DDP_START:
        return name
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(start_method=_DDP_START[name], timeout=timedelta(seconds=timeout_s))


def _plugins(devices):
    """The cluster environment in a SLURM job (``None`` elsewhere: Lightning's choice).

    Under SLURM, Lightning expects one task per device (``srun --ntasks-per-node``); in a job
    with ``--ntasks=1`` it would otherwise silently train on one device only, so there it starts
    the processes itself. Otherwise its SLURM environment, without its auto-requeue:
    :class:`~astrolearn.hpc.requeue.RequeueOnSignal` checkpoints and requeues instead.
    """
    from lightning.pytorch.plugins.environments import LightningEnvironment, SLURMEnvironment

    if devices == "auto":
        import torch

        devices = torch.cuda.device_count()  # what "auto" takes on a GPU node; 1 process otherwise
    if os.environ.get("SLURM_NTASKS") == "1" and devices not in (0, 1, "1"):
        return [LightningEnvironment()]
    if SLURMEnvironment.detect():
        return [SLURMEnvironment(auto_requeue=False)]
    return None


def _slurm_layout(config, given: Mapping) -> dict:
    """Nodes, devices and strategy of the SLURM step this process is a task of (see :func:`trainer_layout`).

    The trainer options the caller gave win; the configuration's are replaced, since Lightning
    refuses a layout other than the step's.
    """
    layout = {k: v for k, v in trainer_layout().items() if k not in given}
    if not layout:
        return {}
    strategy = given.get("strategy", resolve_config(config)["trainer"]["strategy"])
    if strategy == "auto":  # several processes: DDP, with its process-group timeout
        layout["strategy"] = "ddp"
    return layout


def _latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest of ``last.ckpt`` (end of an epoch) and SLURM's ``hpc_ckpt_N.ckpt`` (saved at SIGUSR1)."""
    found = [p for p in (out_dir / "checkpoints").glob("*.ckpt") if p.name == "last.ckpt" or p.name.startswith("hpc_ckpt_")]
    return max(found, key=lambda p: p.stat().st_mtime_ns, default=None)


def _prepare_run_dir(out_dir: Path, config: Mapping, resume: bool, overwrite: bool, set_aside):
    """Check that ``out_dir`` suits a new or resumed run, then write the resolved configuration.

    ``set_aside(path)`` removes an artefact of the run that ``overwrite`` replaces.
    """
    if resume:
        if _latest_checkpoint(out_dir) is None:
            raise UserError(f"{out_dir}: nothing to resume (no checkpoints/last.ckpt)")
        previous = out_dir / CONFIG_FILE
        if previous.is_file() and read_yaml(previous).get("model") != to_plain(config["model"]):
            raise UserError(f"{out_dir}: the model section differs from the run being resumed "
                            f"(see {previous})")
        if previous.is_file():  # kept until training begins: a failed resume restores it
            set_aside(previous)
    elif any((out_dir / name).exists() for name in _RUN_ARTEFACTS):
        if not overwrite:
            raise UserError(f"{out_dir}: holds a previous training run "
                            "(use --resume to continue it or --overwrite to replace it)")
        for name in _RUN_ARTEFACTS:
            if (out_dir / name).exists():
                set_aside(out_dir / name)
    dump_config(config, out_dir / CONFIG_FILE)
