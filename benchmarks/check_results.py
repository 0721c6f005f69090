"""Which results in RESULTS.md were measured on the code as it is now.

    python benchmarks/check_results.py

Each regenerated result has a marker line above it (printed by its benchmark script):
``<!-- result: NAME; code: FILE, FILE; digest: HEX -->``. A result is *stale* when the digest of
those files differs from the recorded one (the code changed since it was measured): rerun the
command printed beside it. Exit status 1 when any result is stale; sections without a marker are
listed as unchecked.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from timing import code_digest

RESULTS = Path(__file__).with_name("RESULTS.md")
MARKER = re.compile(r"<!-- result: (?P<name>[^;]+); code: (?P<code>[^;]+); digest: (?P<digest>[0-9a-f]+) -->")


def check(text: str) -> tuple[list[tuple[str, bool]], list[str]]:
    """(name, up to date) of each marked result, and the titles of sections without a marker."""
    results, unchecked, section, marked = [], [], None, False
    for line in text.splitlines() + ["## end"]:
        if line.startswith("#"):
            if section is not None and not marked:
                unchecked.append(section)
            section, marked = line.lstrip("# ").strip(), False
        found = MARKER.search(line)
        if found:
            marked = True
            paths = [p.strip() for p in found["code"].split(",")]
            results.append((found["name"], code_digest(paths) == found["digest"]))
    return results, unchecked


def main() -> int:
    results, unchecked = check(RESULTS.read_text())
    for name, fresh in results:
        print(f"{'ok   ' if fresh else 'STALE'} {name}")
    for title in unchecked:
        print(f"unchecked (no marker) {title}")
    return 0 if all(fresh for _, fresh in results) else 1


if __name__ == "__main__":
    sys.exit(main())
