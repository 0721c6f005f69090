"""The SLURM scale-out checks (issue 17) on a real cluster, timed: ``pytest -m slurm tests/test_slurm.py``.

    bash .ci/slurm-up.sh          # as root: a two-node SLURM on loopback (as .ci/run does)
    python benchmarks/slurm_tests.py

Prints a result marker, the commit, the machine with its load, the pytest summary and the
wall-clock seconds of each test (pytest's ``--durations``; setup, call and teardown summed).
Exit status: pytest's (the tests must pass, not be skipped: ``ASTROLEARN_REQUIRE_SLURM=1``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from timing import commit, machine, results_marker  # noqa: E402

#: The code the printed result measures (benchmarks/check_results.py).
MEASURED = ["astrolearn/hpc/cli.py", "astrolearn/hpc/requeue.py", "astrolearn/hpc/slurm.py", "astrolearn/training/run.py",
            "tests/test_slurm.py", ".ci/slurm-up.sh", "benchmarks/slurm_tests.py"]


def main() -> int:
    print(results_marker("slurm_tests", MEASURED))
    print(f"Commit {commit()}; {machine()}\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "slurm", "-p", "no:cacheprovider",
                           "--durations=0", "--durations-min=0", "tests/test_slurm.py"], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, "ASTROLEARN_REQUIRE_SLURM": "1"})
    seconds = defaultdict(float)
    for line in proc.stdout.splitlines():
        found = re.match(r"([\d.]+)s (?:setup|call|teardown)\s+tests/test_slurm.py::(\S+)", line)
        if found:
            seconds[found[2]] += float(found[1])
    print("| test | seconds |\n|---|---|")
    for name, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {s:.1f} |")
    print("\n" + proc.stdout.strip().splitlines()[-1])
    print(f"End: {machine()}")
    if proc.returncode:
        print(proc.stdout[-3000:] + proc.stderr[-2000:], file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
