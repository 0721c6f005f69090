"""Redshift reliability benchmark: CNN vs redshift probability vs descriptors + GBM (issue goals).

    python benchmarks/redshift_reliability.py data        [--n-train 40000] [--n-test 20000] [--n-extra N ...]
    python benchmarks/redshift_reliability.py train       [--labels classical 3class] [--max-epochs 30]
    python benchmarks/redshift_reliability.py evaluate    [--labels classical 3class] [--test-split test2]
    python benchmarks/redshift_reliability.py throughput  [--n 4096]
    python benchmarks/redshift_reliability.py baseline    [--labels classical 3class]
    python benchmarks/redshift_reliability.py export      [--labels classical 3class]

Every stage is resumable (rerun the same command after an interruption) and writes under
``--work`` (default ``runs/reliability``):

- ``sim/{train,test,val,test2,train2,train3,...}``: simulated NISP spectra (``astrolearn.redshift.simulate``;
  each set has its own seed, so the test sets are held out; ``val`` chooses the operating
  points that ``evaluate`` applies to the test split; ``train2``, ``train3``, ... made with
  ``--n-extra N2 N3 ...``, extend the training set);
- ``pdf/<set>``: the engine's estimates and log PDFs on the default grid, with the
  truth, as reliability shards (one per simulated shard);
- ``run-<labels>``: training runs (CNN, calibration, descriptor baseline);
- ``baseline-<labels>``: the descriptor baseline alone, on the ``train`` split (``baseline`` stage);
- ``eval-<labels>-<test split>``: reports (``report.md``, CSV, PNG);
- ``throughput``: printed only: classifier PDFs/s (``--n`` PDFs read into memory first) and
  chain (estimate + reliability) spectra/s, through ``benchmarks/timing.py``.

``export`` ships each run as a model directory of the package (``astrolearn/redshift/models/<labels>/``:
metadata, the kept checkpoint, the descriptor baseline).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measured import ENGINE, RELIABILITY, SIMULATOR  # noqa: E402
from timing import commit, compare, machine, markdown, results_marker, threads  # noqa: E402

#: The code the printed results measure (benchmarks/check_results.py): the spectra and their
#: PDFs, the shipped models (both label schemes) and their evaluation.
MEASURED = [*ENGINE, *SIMULATOR, *RELIABILITY, "astrolearn/redshift/reliability/labels.py",
            "astrolearn/redshift/models/3class", "benchmarks/redshift_reliability.py"]

SEEDS = {"train": 101, "test": 202, "val": 7001, "test2": 7002}


def seed_of(split: str) -> int:
    """Seeds 101 (train), 202 (test: consulted by earlier revisions), 7001 (val) and 7002 (test2: a
    test set never used before this revision), then 103, 105, ... for the extra training sets
    train2, train3, ..."""
    return SEEDS.get(split) or 99 + 2 * int(split.removeprefix("train"))


def training_splits(work: Path) -> list[str]:
    return sorted((p.name for p in (work / "pdf").glob("train*")), key=lambda s: int(s[5:] or 1))


def engine_for(cfg, workers):
    from astrolearn.redshift.engine import EngineConfig, RedshiftEngine, lsf_sigma_from_resolution

    wave = cfg.wave
    return RedshiftEngine(wave, lsf_sigma_from_resolution(wave, cfg.resolution), EngineConfig(workers=workers))


def simulate_and_estimate(cfg, engine, sim_dir: Path, out_dir: Path, n: int, seed: int, label: str):
    """Simulate ``n`` spectra into ``sim_dir`` and write the engine's estimates, one reliability shard
    per simulated shard, into ``out_dir`` (shards already there are skipped: resumable)."""
    from astrolearn.io.shards import read_meta, read_shard
    from astrolearn.redshift.reliability.dataset import from_arrays, write_training_shard
    from astrolearn.redshift.simulate import TRUTH_COLUMNS, simulate

    if not (sim_dir / "simulation.json").exists() or len(list(sim_dir.glob("shard-*.h5"))) < -(-n // cfg.shard_size):
        simulate(sim_dir, n, seed, cfg, progress=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(sim_dir.glob("shard-*.h5")):
        out = out_dir / path.name
        # the source is recorded as given (relative or absolute): compare the files it names
        if out.exists() and Path(read_meta(out).get("source", "").rsplit("[", 1)[0]).resolve() == path.resolve():
            continue
        t0 = time.perf_counter()
        shard = read_shard(path, domain="redshift")
        flux, noise = shard.arrays["flux"], shard.arrays["noise"]
        res = engine.run(flux, np.where(noise > 0, 1.0 / np.maximum(noise, 1e-30) ** 2, 0.0))
        truth = {name: shard.column(name) for name in TRUTH_COLUMNS if name != "z"}
        truth["z_true"] = shard.column("z")
        e = from_arrays(res.log_pdf, engine.grid, {"z": res.z, "z_err": res.z_err, "z_proba": res.z_proba},
                        res.candidates.z, truth, str(path))
        write_training_shard(out, e, 0, len(e), f"{path}[0:{len(e)}]", res.candidates.z.shape[1], sorted(truth))
        dt = time.perf_counter() - t0
        ok = np.abs(res.z - truth["z_true"]) / (1 + truth["z_true"]) < 0.003
        print(f"{label} {path.name}: {len(e)} spectra in {dt:.0f} s ({len(e) / dt:.1f}/s), "
              f"success {ok.mean():.3f}", flush=True)


def stage_data(args):
    """Simulate and estimate; one reliability shard per simulated shard (skipped when present)."""
    from astrolearn.redshift.simulate import NispConfig

    cfg = NispConfig()
    engine = engine_for(cfg, args.workers)
    splits = [("train", args.n_train), ("test", args.n_test), ("val", args.n_val), ("test2", args.n_test2)] + \
        [(f"train{i}", n) for i, n in enumerate(args.n_extra, 2)]
    for split, n in splits:
        if n:
            simulate_and_estimate(cfg, engine, args.work / "sim" / split, args.work / "pdf" / split, n,
                                  seed_of(split), split)


def stage_train(args):
    import torch

    from astrolearn.redshift.reliability.labels import get_scheme
    from astrolearn.redshift.reliability.train import train_reliability

    torch.set_num_threads(args.threads)
    shards = [p for split in training_splits(args.work) for p in sorted((args.work / "pdf" / split).glob("shard-*.h5"))]
    for name in args.labels:
        run = args.work / f"run-{name}"
        resume = (run / "checkpoints" / "last.ckpt").exists()
        t0 = time.perf_counter()
        summary = train_reliability(shards, get_scheme(name), run, resume=resume, max_epochs=args.max_epochs,
                                    overrides=[f"data.num_workers={args.loader_workers}"])
        print(name, json.dumps(summary), f"{time.perf_counter() - t0:.0f} s", flush=True)


def stage_baseline(args):
    """Only the descriptors + GBM baseline, on the first training split (what ships beside the CNN)."""
    from astrolearn.redshift.reliability.dataset import SchemeTargets, shard_grid
    from astrolearn.redshift.reliability.labels import get_scheme
    from astrolearn.redshift.reliability.train import BASELINE_FILE, train_baseline
    from astrolearn.training import ShardDataModule

    shards = sorted((args.work / "pdf" / "train").glob("shard-*.h5"))
    for name in args.labels:
        out = args.work / f"baseline-{name}"
        out.mkdir(parents=True, exist_ok=True)
        scheme = get_scheme(name)
        # The training/validation split that astrolearn redshift train makes of these shards.
        split = ShardDataModule(shards, "log_pdf", SchemeTargets(scheme), val_fraction=0.1)
        train, val = split.train_indices, split.val_indices
        t0 = time.perf_counter()
        accuracy = train_baseline(shards, scheme, train, val, out / BASELINE_FILE, shard_grid(shards))
        print(f"{name}: GBM on {len(train)} spectra, validation accuracy {accuracy:.4f}, "
              f"{time.perf_counter() - t0:.0f} s", flush=True)


def stage_evaluate(args):
    """Each model on ``--test-split``, its operating points chosen on the validation split (``val``)."""
    from astrolearn.redshift.reliability.classifier import ReliabilityModel
    from astrolearn.redshift.reliability.dataset import estimates_from_shards
    from astrolearn.redshift.reliability.report import evaluate_reliability
    from astrolearn.redshift.reliability.train import load_baseline

    def split(name):
        return estimates_from_shards(sorted((args.work / "pdf" / name).glob("shard-*.h5")),
                                     f"{name} (seed {seed_of(name)})")

    test, val = split(args.test_split), split("val")
    print(results_marker("redshift_reliability", MEASURED))
    print(f"Commit {commit()}; {machine()}")
    for name in args.labels:
        run = args.work / f"run-{name}"
        model = ReliabilityModel(run if run.is_dir() else name)  # a training run, or the shipped model
        baseline = load_baseline(model.baseline_file, missing_ok=True)
        summary = evaluate_reliability(model, test, args.work / f"eval-{name}-{args.test_split}", baseline,
                                       overwrite=True, validation=val)
        print(f"{name} ({model.name}):", json.dumps({k: summary[k] for k in ("n", "class_counts", "seconds")}))
        print_goals(name, summary)


def print_goals(name: str, summary: dict):
    """The issue's goals at purity 0.8 for the class success, thresholds from validation data."""
    print(f"\n{name}: thresholds of purity 0.8 chosen on {summary['validation']}, applied to the "
          f"{summary['n']} test spectra (95 % paired bootstrap intervals)\n")
    print("| method | threshold | test purity [interval] | test completeness [interval] |\n|---|---|---|---|")
    for r in summary["held_out"]:
        print(f"| {r['method']} | {r['threshold']:.4g} | {r['test_purity']:.4f} [{r['test_purity_lo']:.4f}, "
              f"{r['test_purity_hi']:.4f}] | {r['test_completeness']:.4f} [{r['test_completeness_lo']:.4f}, "
              f"{r['test_completeness_hi']:.4f}] |")
    print("\n| goal | measured | met |\n|---|---|---|")
    for g in summary["goals"]:
        print(f"| {g['goal']} | {g['measured']} | {'yes' if g['met'] else 'not shown'} |")


def stage_throughput(args):
    """PDFs/s of the classifier (PDFs in memory) and spectra/s of estimate + reliability, timed by
    ``benchmarks/timing.py`` (one warm-up call, ``--repeat`` interleaved rounds, median and range)."""
    from astrolearn.io.shards import read_shard
    from astrolearn.redshift.reliability.classifier import ReliabilityModel
    from astrolearn.redshift.reliability.dataset import estimates_from_shards
    from astrolearn.redshift.simulate import NispConfig

    model = ReliabilityModel(args.model or "classical")
    test = estimates_from_shards(sorted((args.work / "pdf" / args.test_split).glob("shard-*.h5")))
    log_pdf = test.log_pdf[0 : args.n]  # in memory: the rate is the classifier's, not the disk's
    shard = read_shard(sorted((args.work / "sim" / args.test_split).glob("shard-*.h5"))[0])
    flux = shard.arrays["flux"][: args.n_chain].astype(np.float64)
    ivar = 1.0 / shard.arrays["noise"][: args.n_chain].astype(np.float64) ** 2
    engine = engine_for(NispConfig(), args.workers)
    print(results_marker("redshift_reliability_throughput", MEASURED))
    print(f"Commit {commit()}; {machine()}; model {model.name}; {args.threads} torch/BLAS threads, "
          f"engine {args.workers} worker threads; PDFs and spectra of {args.test_split}, in memory.\n")
    with threads(args.threads):
        rows = compare({f"classifier, {len(log_pdf)} PDFs per call": lambda: model.predict(log_pdf, test.grid)},
                       len(log_pdf), repeats=args.repeat)
        print(markdown(rows, "PDFs", "the classifier"))
        rows = compare({"engine alone": lambda: engine.run(flux, ivar),
                        "engine + reliability (the chain)": lambda: model.predict(engine.run(flux, ivar).log_pdf,
                                                                                   engine.grid)},
                       len(flux), repeats=args.repeat)
        print(f"\n{len(flux)} spectra per call:\n")
        print(markdown(rows, "spectra", "engine alone"))
    print(f"\nEnd: {machine()}")


def stage_export(args):
    """Ship each trained CNN (with its run's or the baseline stage's GBM), or the GBM alone."""
    import shutil

    from astrolearn.redshift.reliability.classifier import BASELINE_FILE, PACKAGED_DIR, export_model

    for name in args.labels:
        run, baseline = args.work / f"run-{name}", args.work / f"baseline-{name}" / BASELINE_FILE
        if run.is_dir():
            dest = export_model(run, PACKAGED_DIR / name, baseline=baseline if baseline.is_file() else None)
            print(*(f"{p} ({p.stat().st_size / 1e3:.0f} kB)" for p in sorted(dest.rglob("*.*"))), sep="\n")
        elif baseline.is_file():
            shutil.copyfile(baseline, PACKAGED_DIR / name / BASELINE_FILE)
            print(f"{PACKAGED_DIR / name / BASELINE_FILE} ({baseline.stat().st_size / 1e3:.0f} kB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["data", "train", "baseline", "evaluate", "throughput", "export"])
    ap.add_argument("--work", type=Path, default=Path("runs/reliability"))
    ap.add_argument("--n-train", type=int, default=40000)
    ap.add_argument("--n-test", type=int, default=20000)
    ap.add_argument("--n-val", type=int, default=0, help="validation spectra (operating points of evaluate)")
    ap.add_argument("--n-test2", type=int, default=0, help="spectra of the never-used test set test2")
    ap.add_argument("--test-split", default="test2", help="the split evaluate tests on (default test2)")
    ap.add_argument("--n-extra", type=int, nargs="*", default=[],
                    help="sizes of extra training sets train2, train3, ... (seeds 103, 105, ...)")
    ap.add_argument("--labels", nargs="+", default=["classical", "3class"])
    ap.add_argument("--max-epochs", type=int)
    ap.add_argument("--loader-workers", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="engine worker threads")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (train, throughput)")
    ap.add_argument("--model", help="model for the throughput stage (default: the shipped classical)")
    ap.add_argument("--n", type=int, default=4096, help="PDFs timed (throughput)")
    ap.add_argument("--n-chain", type=int, default=256, help="spectra timed through the chain (throughput)")
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds (throughput; at least 5)")
    args = ap.parse_args()
    stages = {"data": stage_data, "train": stage_train, "baseline": stage_baseline, "evaluate": stage_evaluate, "throughput": stage_throughput,
              "export": stage_export}
    stages[args.stage](args)


if __name__ == "__main__":
    main()
