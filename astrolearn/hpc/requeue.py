"""Checkpoint and requeue a SLURM training job when it is told its time is up (SIGUSR1).

Lightning's own auto-requeue saves the checkpoint inside the signal handler, wherever the
training happens to be: a signal landing while the main thread holds a lock that saving needs
(TensorBoard's event queue, taken at every logged step) deadlocks the job, which then runs
until it is killed at its time limit. Here the handler only raises a flag; the checkpoint is
saved at the end of the next training batch, the point Lightning resumes exactly from, on every
rank together (the flag is shared: srun signals the ranks at slightly different batches).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from lightning.pytorch.callbacks import Callback

HPC_CHECKPOINT = re.compile(r"hpc_ckpt_(\d+)\.ckpt$")


class RequeueOnSignal(Callback):
    """On SIGUSR1: save ``DIRECTORY/hpc_ckpt_N.ckpt`` at the next batch end, then ``scontrol requeue`` the job.

    Parameters
    ----------
    directory : Path
        Where the checkpoint goes (the run's ``checkpoints/``); N is one more than the
        highest there. The requeued job resumes from it (see :func:`astrolearn.training.fit`).
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.signalled = False
        self._previous = None

    def setup(self, trainer, pl_module, stage):
        self._previous = signal.signal(signal.SIGUSR1, self._on_signal)

    def teardown(self, trainer, pl_module, stage):
        if self._previous is not None:
            signal.signal(signal.SIGUSR1, self._previous)
            self._previous = None

    def _on_signal(self, signum, frame):
        self.signalled = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not trainer.strategy.reduce_boolean_decision(self.signalled, all=False):
            return
        self.signalled = False
        path = self.directory / f"hpc_ckpt_{next_number(self.directory)}.ckpt"
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            job = slurm_job_id()
            done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            outcome = f"requeued job {job}" if done.returncode == 0 else \
                f"scontrol requeue {job} failed: {done.stderr.strip()}"
            print(f"\nastrolearn: SIGUSR1 at epoch {trainer.current_epoch}, step {trainer.global_step}: saved "
                  f"{path}; {outcome}", flush=True)


def next_number(directory: Path) -> int:
    """One more than the highest N of the ``hpc_ckpt_N.ckpt`` files in ``directory`` (1 for none)."""
    found = [int(m.group(1)) for p in directory.glob("hpc_ckpt_*.ckpt") if (m := HPC_CHECKPOINT.search(p.name))]
    return max(found, default=0) + 1


def slurm_job_id() -> str:
    """This job's id as ``scontrol`` names it (``ARRAYJOB_TASK`` in an array)."""
    if "SLURM_ARRAY_JOB_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]
