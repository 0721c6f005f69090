"""Argument types shared by every command line: counts are checked by argparse, not by the code.

A negative count would otherwise count from the end of an array (``--n-fit -5`` fitting all but
five), and a zero count divide by zero or concatenate nothing far from where it was given.
argparse reports a bad value as its usual usage line plus ``error: argument --x: ...`` (exit 2).
"""

from __future__ import annotations

import argparse


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of items, of processes, a batch size)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def nonneg_int(text: str) -> int:
    """An integer >= 0 (a seed)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value
