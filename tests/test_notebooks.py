"""The tutorial notebooks: committed without outputs, with a parameter cell that shrinks the run.

Their execution, top to bottom at the tiny size, is part of the documentation build
(tests/test_docs.py), which renders them.
"""

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _parameters(path, small: bool) -> dict:
    """The variables that the cell tagged ``parameters`` defines, with or without ASTROLEARN_NB_SMALL=1."""
    cell = next(c for c in _cells(path) if "parameters" in c["metadata"].get("tags", []))
    saved = os.environ.pop("ASTROLEARN_NB_SMALL", None)
    try:
        if small:
            os.environ["ASTROLEARN_NB_SMALL"] = "1"
        namespace = {}
        exec("".join(cell["source"]), namespace)
    finally:
        os.environ.pop("ASTROLEARN_NB_SMALL", None)
        if saved is not None:
            os.environ["ASTROLEARN_NB_SMALL"] = saved
    return {k: v for k, v in namespace.items() if not k.startswith("__")}


def test_there_are_tutorials():
    names = {p.stem for p in NOTEBOOKS}
    assert {"psf_parameters", "petal_cophasing", "redshift_reliability", "spectral_classes", "anatomy_of_a_network"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, (
                f"{path.name}: cell {i} has outputs; strip them: python -m nbstripout notebooks/*.ipynb")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_small_parameter_shrinks_every_size(path):
    small, full = _parameters(path, True), _parameters(path, False)
    assert small["SMALL"] is True and full["SMALL"] is False
    sizes = [k for k, v in full.items() if k.isupper() and isinstance(v, int) and not isinstance(v, bool)
             and k != "SEED"]
    assert sizes, f"{path.name}: the parameter cell defines no size"
    for name in sizes:
        # None means "all", the largest
        assert small[name] is not None and (full[name] is None or small[name] <= full[name]), name
    assert any(full[name] is None or small[name] < full[name] for name in sizes)
    # Outputs go where ASTROLEARN_NB_OUT says, so that CI and the docs build write to temporary space.
    assert "ASTROLEARN_NB_OUT" in "".join(next(c for c in _cells(path) if "parameters" in
                                               c["metadata"].get("tags", []))["source"])
