"""Training throughput of the PSF CNN: online simulation (psf train --online) vs reading shards.

    OMP_NUM_THREADS=2 python benchmarks/psf_online_throughput.py [--samples 2000] [--epochs 2] [--work DIR]

Same network (the packaged ``psf_cnn``), batch size and instrument (NIRC2, 128 x 128) for all
runs: on shards of aberration-free PSFs (simulated first, ``--samples`` / 0.9 of them, so the
training split holds ``--samples``), online without static modes, and online with the preset's
static modes. Prints a result marker, the machine and its load, the training samples/s of
each epoch, validation excluded (the first epoch includes the data loaders' start), each run's
learning curve (``benchmarks/psf_learning_curve.py``), then the samples/s of the data alone: one
epoch of batches drawn from each training data loader without training (shards: read and
transformed in the process, ``num_workers=0``; online: rendered, noised and transformed), timed
by ``benchmarks/timing.py`` (one warm-up epoch, 5 interleaved rounds, median and range).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning as L

sys.path.insert(0, str(Path(__file__).resolve().parent))
from psf_learning_curve import learning_curve, markdown  # noqa: E402
from timing import commit, compare, machine, results_marker  # noqa: E402
from timing import markdown as timing_table  # noqa: E402

#: The code the printed result measures (benchmarks/check_results.py).
MEASURED = ["astrolearn/psf/online.py", "astrolearn/psf/learn.py", "astrolearn/psf/simulate.py",
            "astrolearn/psf/model.py", "astrolearn/psf/noise.py", "astrolearn/psf/instruments.py",
            "astrolearn/psf/pupils.py", "astrolearn/psf/presets/nirc2.yaml", "astrolearn/training/configs/psf_cnn.yaml",
            "astrolearn/training/datamodule.py", "astrolearn/training/modules.py", "astrolearn/training/run.py",
            "astrolearn/nn/builder.py", "benchmarks/psf_online_throughput.py"]


class EpochTimer(L.Callback):
    """Training samples and seconds of each epoch, validation excluded."""

    def __init__(self):
        self.rates, self.validation = [], 0.0  # the sanity check validates before the first epoch

    def on_train_epoch_start(self, trainer, pl_module):
        self.start, self.samples, self.validation = time.perf_counter(), 0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.samples += len(batch[0])

    def on_validation_start(self, trainer, pl_module):
        self.val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        self.validation += time.perf_counter() - self.val_start

    def on_train_epoch_end(self, trainer, pl_module):
        self.rates.append(self.samples / (time.perf_counter() - self.start - self.validation))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000, help="training samples per epoch")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-online"))
    args = ap.parse_args()

    from astrolearn.psf.instruments import load_instrument
    from astrolearn.psf.learn import train_psf
    from astrolearn.psf.online import train_psf_online
    from astrolearn.psf.simulate import simulate

    import torch

    print(results_marker("psf_online_throughput", MEASURED))
    print(f"Commit {commit()}; {machine()}; {torch.get_num_threads()} torch threads; {args.samples} training "
          f"samples per epoch, {args.epochs} epochs\n")
    inst = load_instrument("nirc2")
    n_val = round(args.samples / 9)
    shards = args.work / "shards"
    simulate(inst, args.samples + n_val, 1, shards, {"static": False}, progress=False)
    common = dict(config="psf_cnn", overwrite=True, max_epochs=args.epochs, overrides=["trainer.patience=null"])
    dirs = {"shards, no static modes": args.work / "run-shards", "online, no static modes": args.work / "run-online",
            "online, 9 static modes": args.work / "run-online-static"}
    runs = {
        "shards, no static modes": lambda cb: train_psf(shards, out_dir=dirs["shards, no static modes"],
                                                        callbacks=[cb], **common),
        "online, no static modes": lambda cb: train_psf_online(
            inst, {"static": False}, 1, out_dir=dirs["online, no static modes"], samples_per_epoch=args.samples,
            val_samples=n_val, callbacks=[cb], **common),
        "online, 9 static modes": lambda cb: train_psf_online(
            inst, None, 1, out_dir=dirs["online, 9 static modes"], samples_per_epoch=args.samples,
            val_samples=n_val, callbacks=[cb], **common),
    }
    results = {}
    for name, run in runs.items():
        timer = EpochTimer()
        run(timer)
        results[name] = timer.rates
    print("| data | " + " | ".join(f"epoch {i} samples/s" for i in range(args.epochs)) + " |")
    print("|---|" + "---|" * args.epochs)
    for name, rates in results.items():
        print(f"| {name} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")
    for name, run_dir in dirs.items():
        print(f"\nLearning curve, {name}:\n")
        print(markdown(learning_curve(run_dir)))

    from astrolearn.psf.learn import PsfTargets, PsfTransform
    from astrolearn.psf.online import OnlineDataModule, OnlineSimulation
    from astrolearn.training import ShardDataModule

    loaders = {
        "shards, no static modes": ShardDataModule(shards, "images", PsfTargets(0), transform=PsfTransform(),
                                                   batch_size=64).train_dataloader(),
        "online, no static modes": OnlineDataModule(OnlineSimulation(inst, {"static": False}, 1), args.samples, 1,
                                                    64).train_dataloader(),
        "online, 9 static modes": OnlineDataModule(OnlineSimulation(inst, None, 1), args.samples, 1,
                                                   64).train_dataloader(),
    }
    print(f"\nThe data alone, one epoch of {args.samples} training samples per call:\n")
    rows = compare({name: lambda loader=loader: sum(len(x) for x, _ in loader) for name, loader in loaders.items()},
                   args.samples)
    print(timing_table(rows, "samples", "shards"))
    print(f"\nEnd: {machine()}")


if __name__ == "__main__":
    main()
