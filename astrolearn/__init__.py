"""astrolearn: deep learning for astronomical instruments.

Each domain (``psf``, ``redshift``, ...) exposes the same verbs: simulate, fit (classical),
train, predict, evaluate; all are reachable from the ``astrolearn`` command line.
"""

__version__ = "0.1.0"
