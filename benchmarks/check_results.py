"""Which results in RESULTS.md were measured on the code as it is now.

    python benchmarks/check_results.py

Each regenerated result has a marker line above it (printed by its benchmark script):
``<!-- result: NAME; code: FILE, FILE; digest: HEX -->``. A result is *stale* when the digest of
those files differs from the recorded one (the code changed since it was measured): rerun the
command printed beside it. Exit status 1 when any result is stale.

A marker covers its own section and, when it stands before the section's first subheading, every
subsection under it (a marker under a ``##`` heading before any ``###`` covers the whole ``##``
section). A section that is not covered is listed as unchecked when its own text holds a figure:
a number (a digit not glued to a letter, as in ``chi2``) outside references (issue, section and §
numbers, commit hashes), inline code (names, command options) and HTML comments. Headings of prose or of an index are therefore not
listed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from timing import code_digest

RESULTS = Path(__file__).with_name("RESULTS.md")
MARKER = re.compile(r"<!-- result: (?P<name>[^;]+); code: (?P<code>[^;]+); digest: (?P<digest>[0-9a-f]+) -->")
#: Numbers that are no figures: references ("issue 13", "section 2", "§5", "commit 1b494eb",
#: "cd946a3"), inline code ("`3class`", "`--n 400`") and comments.
REFERENCE = re.compile(r"<!--.*?-->|`[^`\n]*`|\b(?:issues?|sections?|commit)\s+[0-9a-f]+\b|§\s*\d+"
                       r"|\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b", re.IGNORECASE)
#: A figure: a digit that does not continue a name (``chi2``, ``log10``).
FIGURE = re.compile(r"(?<![A-Za-z_])\d")


def check(text: str) -> tuple[list[tuple[str, bool]], list[str]]:
    """(name, up to date) of each marked result, and the titles of uncovered sections with figures."""
    results, unchecked = [], []
    # Each open heading: (level, marked in its own text); the innermost last.
    open_: list[tuple[int, bool]] = []
    title, body = None, []

    def close() -> None:
        if title is None:
            return
        level, marked = open_[-1]
        covered = marked or any(m for _, m in open_[:-1])
        if not covered and FIGURE.search(REFERENCE.sub("", "\n".join(body))):
            unchecked.append(title)

    for line in text.splitlines():
        heading = re.match(r"(#+)\s", line)
        if heading:
            close()
            level = len(heading[1])
            open_ = [h for h in open_ if h[0] < level] + [(level, False)]
            title, body = line.lstrip("# ").strip(), []
            continue
        body.append(line)
        found = MARKER.search(line)
        if found:
            if open_:
                open_[-1] = (open_[-1][0], True)
            paths = [p.strip() for p in found["code"].split(",")]
            results.append((found["name"], code_digest(paths) == found["digest"]))
    close()
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
