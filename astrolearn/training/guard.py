"""Undoing a training start that fails before training begins (see :func:`astrolearn.training.fit`).

Imported by ``fit`` only, after Lightning. The callback is a module-level class, and whether
training began is a marker file, so that strategies which pickle the trainer into processes of
their own (``ddp_spawn``) carry the guard and tell the parent that training began.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class StartGuard:
    """Undo what a start wrote in the run directory if it fails before training begins.

    A start refused by an invalid setting (an optimiser option, a data-loader option, a network
    that does not fit the data) must leave the directory as it was, or the corrected command is
    refused as "holds a previous training run" while ``--resume`` finds nothing to resume. The
    previous run that ``--overwrite`` replaces is set aside and deleted only once training
    begins (``on_train_start``), then restored by :meth:`undo`.
    """

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.existed = out_dir.exists()
        self.before = set(out_dir.rglob("*")) if self.existed else set()
        self.aside = out_dir / f".replaced-{os.getpid()}"
        self.marker = out_dir / f".training-began-{os.getpid()}"
        self.callback = OnTrainStart(self)

    def set_aside(self, path: Path):
        """Move ``path`` (in the run directory) out of the way until training begins."""
        self.aside.mkdir(exist_ok=True)
        os.replace(path, self.aside / path.name)

    def began(self):
        """Training has begun (here or in a spawned process): drop what was set aside."""
        self.marker.touch()
        shutil.rmtree(self.aside, ignore_errors=True)

    def done(self):
        """The start is over, training having begun: nothing left to undo."""
        shutil.rmtree(self.aside, ignore_errors=True)
        self.marker.unlink(missing_ok=True)

    def undo(self):
        """The start failed: remove what it wrote and put back what it set aside (unless training had begun)."""
        if self.marker.exists():
            self.done()
            return
        if not self.existed:
            shutil.rmtree(self.out_dir, ignore_errors=True)
            return
        # What was set aside comes back whole, replacing what this start wrote at its place.
        restored = [self.out_dir / p.name for p in self.aside.iterdir()] if self.aside.is_dir() else []
        created = {p for p in self.out_dir.rglob("*") if self.aside not in (p, *p.parents)} - self.before
        for path in sorted(created | set(restored), reverse=True):  # children before their folder
            _remove(path)
        for path in restored:
            os.replace(self.aside / path.name, path)
        if self.aside.is_dir():
            self.aside.rmdir()


class OnTrainStart(Callback):
    """Tells the guard, on global rank 0, that training began."""

    def __init__(self, guard: StartGuard):
        self.guard = guard

    def on_train_start(self, trainer, pl_module):
        if trainer.is_global_zero:
            self.guard.began()


def _remove(path: Path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
