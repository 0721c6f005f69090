"""Arguments shared by every command line; counts are checked by argparse, not by the code.

A negative count would otherwise count from the end of an array (``--n-fit -5`` fitting all but
five), and a zero count divide by zero or concatenate nothing far from where it was given.
argparse reports a bad value as its usual usage line plus ``error: argument --x: ...`` (exit 2).
"""

from __future__ import annotations

import argparse

from .errors import UserError


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


def add_progress_flag(p: argparse.ArgumentParser) -> None:
    """``--no-progress``, the one name of the quiet option of every long command."""
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", dest="no_progress", action="store_true", help=argparse.SUPPRESS)  # former name


def add_trainer_args(p: argparse.ArgumentParser) -> None:
    """The Lightning options of every ``train`` command (CPU laptop to GPU cluster)."""
    p.add_argument("--max-epochs", type=positive_int,
                   help="epochs of the whole run (raise it with --resume to train longer)")
    p.add_argument("--accelerator", help="cpu, gpu or auto")
    p.add_argument("--devices", help="number of devices (e.g. 4) or auto")
    p.add_argument("--strategy", help="e.g. ddp for several GPUs")
    p.add_argument("--precision", help="32-true, 16-mixed or bf16-mixed (GPU)")


def trainer_options(args) -> dict:
    """The options of :func:`add_trainer_args` the user gave, for :func:`astrolearn.training.fit`."""
    devices = args.devices
    if devices not in (None, "auto"):
        try:
            devices = int(devices)
        except ValueError:
            raise UserError(f"--devices must be an integer or auto, not {devices!r}") from None
    given = {"accelerator": args.accelerator, "devices": devices, "strategy": args.strategy,
             "precision": args.precision, "max_epochs": args.max_epochs}
    return {k: v for k, v in given.items() if v is not None}
