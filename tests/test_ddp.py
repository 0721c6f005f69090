"""DDP on 2 CPU processes (gloo) gives the same training as one process with the same data.

Following the pitfalls of ../shared/tools/README.md: ``strategy="ddp"`` runs in a subprocess
(tests/ddp_worker.py) with a clean environment, a local master address, a free port and a
process-group timeout, since in-process ``ddp`` would rerun the pytest session in the child.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import torch
from test_training import write_dataset

from astrolearn.config import deep_merge
from astrolearn.training import resolve_config

WORKER = Path(__file__).with_name("ddp_worker.py")

# A linear model trained by plain SGD: rank gradients averaged by DDP over 2 x 8 samples equal
# the gradient of the same 16 samples in one process, so both runs follow the same path.
CONFIG = {
    "model": {"dim": 1, "blocks": [], "head": {"type": "regression"}},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0},
    "data": {"batch_size": 8, "val_fraction": 0.25},
    "trainer": {"max_epochs": 2, "patience": None, "log_every_n_steps": 1, "process_group_timeout": 60},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_single_process(tmp_path):
    data_dir = write_dataset(tmp_path / "data", n_shards=2, per_shard=32)  # 48 training samples
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    prefix = tmp_path / "result"
    ddp = subprocess.Popen([sys.executable, str(WORKER), str(data_dir), str(tmp_path / "ddp"), str(prefix),
                            json.dumps(CONFIG)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)

    # Meanwhile (the workers spend most of their time importing Lightning): one process with
    # the same samples per step.
    from astrolearn.training import ShardDataModule, build_module, fit, select_columns

    single = resolve_config(deep_merge(CONFIG, {"data": {"batch_size": 16}}))
    data = ShardDataModule(data_dir, "flux", select_columns("a"), **single["data"])
    module = build_module(single, data)
    fit(single, data, module, tmp_path / "single", accelerator="cpu", devices=1)

    try:
        output, _ = ddp.communicate(timeout=300)
    finally:
        if ddp.poll() is None:  # timed out: stop both ranks (the session started for them)
            os.killpg(ddp.pid, signal.SIGKILL)
    assert ddp.returncode == 0, output[-4000:]
    ranks = [torch.load(f"{prefix}-rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    training_samples = {float(data.dataset[int(i)][0][0, 0]) for i in data.train_indices}
    for epoch in (0, 1):
        seen = [set(r["seen"][epoch]) for r in ranks]
        assert len(seen[0]) == len(seen[1]) == 24 and not seen[0] & seen[1]  # disjoint halves
        assert seen[0] | seen[1] == training_samples
    for name, value in module.model.state_dict().items():
        torch.testing.assert_close(ranks[0]["state_dict"][name], value, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ranks[1]["state_dict"][name], value, rtol=1e-5, atol=1e-6)
