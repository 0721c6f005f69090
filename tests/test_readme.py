"""README's commands are the CLI's: each ``astrolearn ...`` line of its code blocks parses.

Running the whole tour takes minutes (it is done by hand on a fresh clone before a release);
parsing catches what drifts silently: a renamed option, a removed verb, a missing argument.
"""

import re
import shlex
from pathlib import Path

import pytest

from astrolearn.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = [line.split(" #")[0].strip() for block in blocks for line in block.splitlines()]
    # "... && astrolearn demo": the part after the install.
    return [line[line.index("astrolearn "):] for line in lines if "astrolearn " in line and not line.startswith("#")]


def test_readme_has_a_tour():
    verbs = {tuple(shlex.split(c)[1:3]) for c in readme_commands()}
    for verb in ("simulate", "fit", "predict", "train", "evaluate"):
        assert ("psf", verb) in verbs, verb
    for verb in ("simulate", "estimate", "evaluate", "predict", "train", "evaluate-reliability", "run"):
        assert ("redshift", verb) in verbs, verb


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    build_parser().parse_args(shlex.split(command)[1:])
