"""Learning curve of a PSF training run: validation errors against training samples seen.

    python benchmarks/psf_learning_curve.py RUN [--plot curve.png]

Reads every ``RUN/csv/version_*/metrics.csv`` (one per start: a resumed run continues the
curve) and prints, per validation epoch, the samples seen (``samples_seen``, written by ``psf
train``, online or on shards), the validation mean absolute error of ln r0 (~ the relative
error of r0), of ln A (~ the relative error of A), the mean over the static modes [nm] and the
validation loss. ``--plot`` draws the three errors against samples seen (log scale). The
result marker names the training code that produced the run (the run itself is not in git: its
command goes beside the table).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import commit, machine, results_marker  # noqa: E402

TRAINING_CODE = ["astrolearn/nn/builder.py", "astrolearn/psf/learn.py", "astrolearn/psf/model.py",
                 "astrolearn/psf/noise.py", "astrolearn/psf/online.py", "astrolearn/psf/pupils.py",
                 "astrolearn/training/configs/psf_cnn.yaml", "astrolearn/training/modules.py",
                 "astrolearn/training/run.py", "benchmarks/psf_learning_curve.py"]


def learning_curve(run: Path) -> list[dict]:
    """Validation rows of a run's metrics, ordered by samples seen (the last value of a repeated epoch wins)."""
    rows = {}
    for path in sorted((run / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1])):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if not row.get("samples_seen"):
                    continue
                stat = [float(v) for k, v in row.items() if k.startswith("val/mae/stat_") and v]
                rows[int(row["epoch"])] = {
                    "epoch": int(row["epoch"]), "samples_seen": float(row["samples_seen"]),
                    "r0": float(row["val/mae/log_r0"]), "amp": float(row["val/mae/log_amp"]),
                    "static_nm": sum(stat) / len(stat) if stat else float("nan"), "val_loss": float(row["val/loss"]),
                }
    if not rows:
        raise SystemExit(f"{run}: no validation rows with samples_seen in csv/version_*/metrics.csv")
    return sorted(rows.values(), key=lambda r: r["samples_seen"])


def markdown(curve: list[dict]) -> str:
    """The rows of :func:`learning_curve` as a Markdown table."""
    lines = ["| epoch | samples seen | MAE ln r0 | MAE ln A | MAE static [nm] | val loss |", "|---|---|---|---|---|---|"]
    for r in curve:
        static = "-" if r["static_nm"] != r["static_nm"] else f"{r['static_nm']:.2f}"  # "-": no static modes
        lines.append(f"| {r['epoch']} | {r['samples_seen']:.0f} | {r['r0']:.4f} | {r['amp']:.4f} | {static} | "
                     f"{r['val_loss']:.4f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--plot", type=Path, help="PNG of the errors against samples seen")
    args = ap.parse_args()
    curve = learning_curve(args.run)
    print(results_marker(f"psf_learning_curve_{args.run.name}", TRAINING_CODE))
    print(f"`python benchmarks/psf_learning_curve.py {' '.join(sys.argv[1:])}`, commit {commit()}; {machine()}\n")
    print(markdown(curve))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
        seen = [r["samples_seen"] for r in curve]
        ax1.plot(seen, [r["r0"] for r in curve], "o-", label="ln r0")
        ax1.plot(seen, [r["amp"] for r in curve], "s-", label="ln A")
        ax1.set(xscale="log", xlabel="training samples seen", ylabel="validation MAE")
        ax1.legend()
        ax2.plot(seen, [r["static_nm"] for r in curve], "o-")
        ax2.set(xscale="log", xlabel="training samples seen", ylabel="validation MAE, static modes [nm]")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
