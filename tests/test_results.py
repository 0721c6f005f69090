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
    text = f"## A\n{fresh}\ntable\n## B\n{stale}\n## C\nno marker, 0.5 s\n"
    assert check(text) == ([("demo", True), ("demo", False)], ["C"])


def test_results_markers_name_files_that_exist():
    for found in MARKER.finditer(RESULTS.read_text()):
        for path in found["code"].split(","):
            assert (BENCH.parent / path.strip()).exists(), (found["name"], path)  # a file, or a model directory


def test_a_marker_before_the_first_subheading_covers_the_subsections():
    marker = results_marker("demo", ["astrolearn/psf/model.py"])
    text = (f"## A (issue 16)\n{marker}\n### A.1\n| x | 0.5 |\n### A.2\n3 s\n"
            "## B (issue 5)\nintro\n### B.1\n| x | 0.5 |\n" + marker + "\n### B.2\n7 of 9\n")
    # B's marker stands under B.1 only: B.2 is not covered; B's own text holds no figure.
    assert check(text) == ([("demo", True), ("demo", True)], ["B.2"])


def test_prose_and_index_headings_are_not_unchecked():
    text = ("# Results\nEvery number comes from the command quoted with it (commit abc1234).\n"
            "## Physics (issue 2)\n### Sub (issue 13, section 3; §5)\n<!-- a comment 42 -->\nsee above\n"
            "### Moved\nchi2 tables of `3class`: `git show cd946a3:RESULTS.md`\n"
            "### Figures\nload average 3\n")
    assert check(text) == ([], ["Figures"])
