"""benchmarks/check_results.py: a result is stale once the code it measured changes."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from check_results import MARKER, RESULTS, check  # noqa: E402
from timing import results_marker  # noqa: E402


def test_marker_of_the_current_code_is_fresh_and_another_digest_stale():
    fresh = results_marker("demo", ["astrolearn/psf/model.py"])
    stale = fresh.replace(fresh.split("digest: ")[1][:12], "0" * 12)
    text = f"# A\n{fresh}\ntable\n## B\n{stale}\n## C\nno marker\n"
    assert check(text) == ([("demo", True), ("demo", False)], ["C"])


def test_results_markers_name_files_that_exist():
    for found in MARKER.finditer(RESULTS.read_text()):
        for path in found["code"].split(","):
            assert (BENCH.parent / path.strip()).is_file(), (found["name"], path)
