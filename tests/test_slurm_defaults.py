"""What a training takes from the machine and from SLURM, without a cluster: loader workers,
learning-rate scaling, and a requeued job resuming its own run."""

import pytest
import torch
from test_training import regression_setup, tiny_config, write_dataset

from astrolearn.errors import UserError
from astrolearn.training import fit
from astrolearn.training.datamodule import auto_workers
from astrolearn.training.optim import scaled_lr


@pytest.mark.parametrize("on_gpu, cores, per_node, slurm_cpus, expected", [
    (True, 16, 1, None, 8),   # at most 8
    (True, 4, 1, None, 3),    # one core feeds the GPU
    (True, 16, 4, None, 3),   # 4 processes share the node's 16 cores
    (True, 64, 4, "3", 2),    # SLURM's --cpus-per-task
    (True, 1, 1, None, 0),
    (False, 16, 1, None, 0),  # CPU: the training takes the cores

])
def test_auto_workers(monkeypatch, on_gpu, cores, per_node, slurm_cpus, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    if slurm_cpus:
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", slurm_cpus)
    assert auto_workers(on_gpu, per_node) == expected


def test_scaled_lr():
    cfg = {"lr": 1e-3, "lr_scaling": "none", "lr_batch": None}
    assert scaled_lr(cfg, 64, 256) == 1e-3
    assert scaled_lr({**cfg, "lr_scaling": "linear"}, 64, 256) == pytest.approx(4e-3)
    assert scaled_lr({**cfg, "lr_scaling": "sqrt"}, 64, 256) == pytest.approx(2e-3)
    assert scaled_lr({**cfg, "lr_scaling": "linear", "lr_batch": 128}, 64, 256) == pytest.approx(2e-3)
    with pytest.raises(UserError, match="optimizer.lr_scaling must be one of none, sqrt, linear, not 'cubic'"):
        scaled_lr({**cfg, "lr_scaling": "cubic"}, 64, 256)
    with pytest.raises(UserError, match="optimizer.lr_batch must be a positive integer"):
        scaled_lr({**cfg, "lr_scaling": "linear", "lr_batch": 0.5}, 64, 256)


def test_trainer_uses_the_scaled_lr_and_auto_workers(tmp_path):
    data_dir = write_dataset(tmp_path / "data")
    config = tiny_config({"type": "regression"}, optimizer={"lr": 0.01, "lr_scaling": "linear"},
                         trainer={"max_epochs": 1, "accumulate_grad_batches": 2}, data={"num_workers": "auto"})
    config, data, module = regression_setup(data_dir, config)
    trainer = fit(config, data, module, tmp_path / "run")
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.02)  # 2 batches per step
    assert trainer.train_dataloader.num_workers == auto_workers(False)


def test_bad_num_workers_is_refused(tmp_path):
    data_dir = write_dataset(tmp_path / "data")
    with pytest.raises(UserError, match="data.num_workers must be an integer >= 0 or auto, not 'many'"):
        regression_setup(data_dir, tiny_config({"type": "regression"}, data={"num_workers": "many"}))


def test_requeued_job_resumes_its_own_run(tmp_path, monkeypatch):
    data_dir = write_dataset(tmp_path / "data")
    config, data, module = regression_setup(data_dir, tiny_config({"type": "regression"}, trainer={"max_epochs": 1}))
    fit(config, data, module, tmp_path / "run")
    steps = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    # The same command again, as SLURM restarts it after a requeue: no --resume, no refusal.
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    config, data, module = regression_setup(data_dir, tiny_config({"type": "regression"}, trainer={"max_epochs": 2}))
    fit(config, data, module, tmp_path / "run")
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2 * steps
    assert len(list((tmp_path / "run" / "csv").glob("version_*"))) == 2
    # Requeued before its first checkpoint: it starts over in the directory it had begun.
    config, data, module = regression_setup(data_dir, tiny_config({"type": "regression"}, trainer={"max_epochs": 1}))
    (tmp_path / "early" / "csv").mkdir(parents=True)
    (tmp_path / "early" / "config.yaml").write_text("{}")
    fit(config, data, module, tmp_path / "early")
    assert (tmp_path / "early" / "checkpoints" / "last.ckpt").is_file()


class _Preempted(Exception):
    pass


def test_mid_epoch_checkpoint_resumes_the_same_training(tmp_path, monkeypatch):
    """As SLURM's SIGUSR1 handler does: a checkpoint in the middle of an epoch, then the job dies."""
    import lightning as L

    class SaveThenDie(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == 7:  # epoch 1, batch 2 of 5
                trainer.save_checkpoint(tmp_path / "cut" / "checkpoints" / "hpc_ckpt_1.ckpt")
                raise _Preempted

    data_dir = write_dataset(tmp_path / "data")
    sgd = {"name": "sgd", "lr": 0.01, "momentum": 0.0}
    setup = lambda: regression_setup(data_dir, tiny_config({"type": "regression"}, optimizer=sgd,  # noqa: E731
                                                           trainer={"max_epochs": 3}, data={"num_workers": 0}))
    config, data, straight = setup()
    fit(config, data, straight, tmp_path / "straight")
    config, data, module = setup()
    with pytest.raises(_Preempted):
        fit(config, data, module, tmp_path / "cut", callbacks=[SaveThenDie()])
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    config, data, resumed = setup()
    fit(config, data, resumed, tmp_path / "cut")
    last = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 15 and last["epoch"] == 2
    # The batches left of epoch 1 were those of the uninterrupted run: the same weights.
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value)


def _files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_array_tasks_write_the_set_of_one_process(tmp_path):
    """What each task of ``submit --array K`` runs, in turn here: together, the same files."""
    from psf_helpers import circular

    from astrolearn.psf.simulate import simulate as psf_simulate
    from astrolearn.redshift.simulate import NispConfig
    from astrolearn.redshift.simulate import simulate as nisp_simulate

    inst, cfg = circular(npix=32), {"shard_size": 2, "static": False}
    psf_simulate(inst, 7, 3, tmp_path / "psf-one", cfg, progress=False)
    for task in range(3):
        paths = psf_simulate(inst, 7, 3, tmp_path / "psf-array", cfg, progress=False, task=(task, 3))
        assert len(paths) == 4  # every task returns the whole set
    assert _files(tmp_path / "psf-array") == _files(tmp_path / "psf-one")

    nisp_simulate(tmp_path / "z-one", 50, seed=7, cfg=NispConfig(shard_size=20), progress=False)
    for task in (1, 0):
        nisp_simulate(tmp_path / "z-array", 50, seed=7, cfg=NispConfig(shard_size=20), progress=False, task=(task, 2))
        assert len(list((tmp_path / "z-array").glob("shard-*.h5"))) == (1 if task == 1 else 3)
    assert _files(tmp_path / "z-array") == _files(tmp_path / "z-one")
    # The array resubmitted after task 0 failed: task 1 has nothing left to do, task 0 its shards.
    (tmp_path / "z-array" / "shard-00002.h5").unlink()
    kept = (tmp_path / "z-array" / "shard-00001.h5").stat().st_mtime_ns
    for task in (1, 0):
        nisp_simulate(tmp_path / "z-array", 50, seed=7, cfg=NispConfig(shard_size=20), progress=False, task=(task, 2))
    assert _files(tmp_path / "z-array") == _files(tmp_path / "z-one")
    assert (tmp_path / "z-array" / "shard-00001.h5").stat().st_mtime_ns == kept


def test_sigusr1_saves_at_the_batch_end_and_requeues(tmp_path, monkeypatch):
    """The handler only raises a flag; the checkpoint and ``scontrol requeue`` follow at the batch's end."""
    import os
    import signal

    import lightning as L

    class Signal(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == 7:
                os.kill(os.getpid(), signal.SIGUSR1)

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/scontrol.log\n")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    before = signal.getsignal(signal.SIGUSR1)
    data_dir = write_dataset(tmp_path / "data")
    config, data, module = regression_setup(data_dir, tiny_config({"type": "regression"}, trainer={"max_epochs": 2}))
    fit(config, data, module, tmp_path / "run", callbacks=[Signal()])
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    saved = torch.load(tmp_path / "run" / "checkpoints" / "hpc_ckpt_1.ckpt", weights_only=False)
    assert saved["global_step"] == 8 and saved["epoch"] == 1  # the end of the signalled batch
    assert signal.getsignal(signal.SIGUSR1) is before


def test_resume_with_loader_workers_trains_on_the_next_epochs_order(tmp_path):
    """With workers, Lightning draws a resumed run's first indices before ``set_epoch``: epoch 1, not 0's order."""
    data_dir = write_dataset(tmp_path / "data")
    sgd = {"name": "sgd", "lr": 0.05, "momentum": 0.0}
    setup = lambda: regression_setup(data_dir, tiny_config({"type": "regression"}, optimizer=sgd,  # noqa: E731
                                                           data={"num_workers": 1}))
    config, data, direct = setup()
    fit(config, data, direct, tmp_path / "direct", max_epochs=2)
    config, data, first = setup()
    fit(config, data, first, tmp_path / "resumed", max_epochs=1)
    config, data, resumed = setup()
    fit(config, data, resumed, tmp_path / "resumed", max_epochs=2, resume=True)
    for name, value in direct.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value)
