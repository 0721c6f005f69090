"""Success of the redshift engine vs Halpha flux and S/N on simulated NISP spectra (check 3.2).

Runs the three CLI steps in this process, with their defaults (flat prior over z 0.01-3.0, the
two-pass grid)::

    astrolearn redshift simulate --n N --seed SEED --out OUT/sim
    astrolearn redshift estimate OUT/sim --out OUT/est
    astrolearn redshift evaluate OUT/est --out OUT/eval

and prints a result marker, the commit, the machine with its load, the time of each step and
every row of ``evaluation.md`` (success rate +- its binomial standard error per bin of Halpha
flux, of Halpha S/N and per sample; failures by line alias).

Usage (about 1-2 min on 2 cores)::

    OMP_NUM_THREADS=1 python benchmarks/redshift_simulation.py --n 3000 --seed 11 --out runs/redshift_simulation
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measured import CLI, ENGINE, SIMULATOR  # noqa: E402
from timing import commit, machine, results_marker  # noqa: E402

#: The code the printed result measures (benchmarks/check_results.py).
MEASURED = [*ENGINE, *SIMULATOR, *CLI, "astrolearn/redshift/evaluate.py", "benchmarks/redshift_simulation.py"]


def main(argv=None) -> int:
    from astrolearn.cli import main as cli

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=Path("runs/redshift_simulation"))
    args = ap.parse_args(argv)
    out = args.out
    steps = [["simulate", "--n", str(args.n), "--seed", str(args.seed), "--out", str(out / "sim"), "--no-progress"],
             ["estimate", str(out / "sim"), "--out", str(out / "est"), "--no-progress"],
             ["evaluate", str(out / "est"), "--out", str(out / "eval"), "--no-plots"]]
    print(results_marker("redshift_simulation", MEASURED))
    print(f"Commit {commit()}; {machine()}")
    for step in steps:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli(["redshift", *step, "--overwrite"])
        if rc:
            return rc
        print(f"`astrolearn redshift {' '.join(step)}`: {time.perf_counter() - t0:.0f} s")
    print(f"End: {machine()}\n")
    # the report's headings as bold lines: the output goes under a heading of RESULTS.md
    for line in (out / "eval" / "evaluation.md").read_text().splitlines():
        print(f"**{line.lstrip('# ')}**" if line.startswith("#") else line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
