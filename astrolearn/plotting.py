"""The one way the package gets matplotlib's pyplot for the PNGs it writes."""

from __future__ import annotations


def pyplot():
    """``matplotlib.pyplot``, on the non-interactive Agg backend unless pyplot is already in use.

    Commands and batch jobs have no display: they get Agg. In a notebook or a session that has
    already imported pyplot, its backend is left alone, so the user's later ``plt.show()`` still
    shows figures (the package's figures are saved and closed, never shown).
    """
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
