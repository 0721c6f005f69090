"""The documentation site: built with warnings as errors, tutorial notebooks executed in it.

One Sphinx build (a minute or two on two cores, most of it executing the notebooks at their
tiny size) serves every test here. Needs the ``docs`` extra; skipped without it.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs extra is not installed (pip install -e '.[docs]')")
pytest.importorskip("myst_nb", reason="the docs extra is not installed (pip install -e '.[docs]')")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

from astrolearn_docs import public_modules  # noqa: E402

from astrolearn.cli import build_parser  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(completed sphinx-build process, HTML directory)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "ASTROLEARN_NB_SMALL": "1", "OMP_NUM_THREADS": "1"}
    env.pop("ASTROLEARN_DOCS_EXECUTE", None)
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
                           str(ROOT / "docs"), str(out)], capture_output=True, text=True, env=env, timeout=1200)
    return proc, out


def test_docs_build_with_warnings_as_errors(site):
    proc, out = site
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    for page in ("index", "install", "tutorials", "cli", "api", "formats", "extending", "parameters", "pupils",
                 "models"):
        assert (out / f"{page}.html").is_file(), page


def _commands(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield " ".join((*prefix, name)), sub
                yield from _commands(sub, (*prefix, name))


def test_cli_reference_is_generated_from_the_parser(site):
    _, out = site
    html = (out / "cli.html").read_text()
    commands = dict(_commands(build_parser()))
    assert {"psf simulate", "psf train", "redshift estimate", "redshift run", "demo"} <= set(commands)
    for name, parser in commands.items():
        assert f"usage: astrolearn {name} " in html, name
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:  # former names, hidden from --help too
                continue
            for option in action.option_strings:
                assert option in html, f"{name} {option}"


def test_api_reference_documents_every_public_module(site):
    _, out = site
    html = (out / "api.html").read_text()
    modules = public_modules("astrolearn")
    assert "astrolearn.psf.learn" in modules and "astrolearn.training.run" in modules
    assert not any(m.endswith(".cli") for m in modules)
    for module in modules:
        assert f'id="module-{module}"' in html, module
    assert 'id="astrolearn.psf.learn.PsfEstimator"' in html


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_are_executed_into_the_site(site, path):
    _, out = site
    html = (out / "notebooks" / f"{path.stem}.html").read_text()
    # Executed to the end: a figure for every plt.show() of the notebook, up to its last cell.
    shown = path.read_text().count("plt.show()")
    assert shown >= 3 and html.count("<img") >= shown, f"{path.name}: {html.count('<img')} figures for {shown} plots"
