"""Train with ``strategy="ddp"`` on 2 CPU processes (gloo); run by tests/test_ddp.py.

Usage: python ddp_worker.py DATA_DIR RUN_DIR RESULT_PREFIX CONFIG_JSON

Lightning's ``ddp`` launcher starts rank 1 by running this same command again, so everything
here runs in both processes. Each rank writes ``RESULT_PREFIX-rank<r>.pt``: the first input
value of every training sample it saw, per epoch, and its final weights.
"""

import json
import sys

import lightning as L
import torch

from astrolearn.training import ShardDataModule, build_module, fit, select_columns


class SeenInputs(L.Callback):
    """Records which samples this rank trains on (their first input value identifies them)."""

    def __init__(self):
        self.seen = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.setdefault(trainer.current_epoch, []).extend(batch[0][:, 0, 0].tolist())


def main(data_dir, run_dir, prefix, config_json):
    torch.set_num_threads(1)
    config = json.loads(config_json)
    data = ShardDataModule(data_dir, "flux", select_columns("a"), **config["data"])
    module = build_module(config, data)
    seen = SeenInputs()
    trainer = fit(config, data, module, run_dir, accelerator="cpu", devices=2, strategy="ddp", callbacks=[seen])
    torch.save({"seen": seen.seen, "state_dict": module.model.state_dict(), "world_size": trainer.world_size},
               f"{prefix}-rank{trainer.global_rank}.pt")
    # Rank 0 is the process the test waits for: it must not exit before rank 1 has saved.
    trainer.strategy.barrier("results saved")


if __name__ == "__main__":
    main(*sys.argv[1:])
