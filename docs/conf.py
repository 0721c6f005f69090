"""Sphinx configuration of the astrolearn documentation (``sphinx-build -W docs build/docs``)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's package, not another installed copy
# ... also in the kernels that execute the notebooks
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

import astrolearn  # noqa: E402

project = "astrolearn"
author = "the astrolearn developers"
copyright = "the astrolearn developers, BSD-3-Clause"
version = release = astrolearn.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_nb",
    "astrolearn_docs",
]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "notebooks/notebook-output"]

# Docstrings are numpydoc-style; napoleon reads them without numpydoc's extra dependencies.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
# "Attributes" as a field list: autodoc documents dataclass fields already, and two targets of one
# name (Design.z, ZGrid.z) would make every such attribute reference ambiguous.
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}
# Lightning's own docstrings (inherited by the data modules) use roles of its documentation.
autodoc_inherit_docstrings = False

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"astrolearn {release}"

# Notebooks: executed at build time at their tiny size (a minute in all), so that the pages show
# their figures and a notebook that breaks fails the build (ASTROLEARN_DOCS_EXECUTE=off: a quick
# build without outputs).
os.environ.setdefault("ASTROLEARN_NB_SMALL", "1")
nb_execution_mode = os.environ.get("ASTROLEARN_DOCS_EXECUTE", "force")
nb_execution_in_temp = True  # outputs go to a temporary directory, not next to the notebooks
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_merge_streams = True
nb_output_stderr = "remove"  # progress bars and Lightning's hints, not the story
