"""Training throughput of the PSF CNN: online simulation (psf train --online) vs reading shards.

    OMP_NUM_THREADS=2 python benchmarks/psf_online_throughput.py [--samples 2000] [--epochs 2] [--work DIR]

Same network (the packaged ``psf_cnn``), batch size and instrument (NIRC2, 128 x 128) for all
runs: on shards of aberration-free PSFs (simulated first, ``--samples`` / 0.9 of them, so the
training split holds ``--samples``), online without static modes, and online with the preset's
static modes. Prints the training samples/s of each epoch, validation excluded (the first
epoch includes the data loaders' start), then the samples/s of the data alone: the batches of
one epoch drawn from each training data loader without training (shards: read and transformed
in the process, ``num_workers=0``; online: rendered, noised and transformed).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning as L


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

    inst = load_instrument("nirc2")
    n_val = round(args.samples / 9)
    shards = args.work / "shards"
    simulate(inst, args.samples + n_val, 1, shards, {"static": False}, progress=False)
    common = dict(config="psf_cnn", overwrite=True, max_epochs=args.epochs, overrides=["trainer.patience=null"])
    runs = {
        "shards, no static modes": lambda cb: train_psf(shards, out_dir=args.work / "run-shards", callbacks=[cb],
                                                        **common),
        "online, no static modes": lambda cb: train_psf_online(
            inst, {"static": False}, 1, out_dir=args.work / "run-online", samples_per_epoch=args.samples,
            val_samples=n_val, callbacks=[cb], **common),
        "online, 9 static modes": lambda cb: train_psf_online(
            inst, None, 1, out_dir=args.work / "run-online-static", samples_per_epoch=args.samples,
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
    print("\n| data alone | samples/s |\n|---|---|")
    for name, loader in loaders.items():
        start, count = time.perf_counter(), sum(len(x) for x, _ in loader)
        print(f"| {name} | {count / (time.perf_counter() - start):.0f} |")


if __name__ == "__main__":
    main()
