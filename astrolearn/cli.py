"""The ``astrolearn`` command line: one subcommand per domain.

Each domain module ``astrolearn/<domain>/cli.py`` exposes ``register(subparsers)`` and only
imports argparse at start-up; heavy imports (torch, lightning) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import UserError

#: Domains whose ``cli.register`` adds a subcommand, in help order.
DOMAINS = ("psf", "redshift")


def add_progress_flag(p: argparse.ArgumentParser) -> None:
    """``--no-progress``, the one name of the quiet option of every long command."""
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", dest="no_progress", action="store_true", help=argparse.SUPPRESS)  # former name


def add_trainer_args(p: argparse.ArgumentParser) -> None:
    """The Lightning options of every ``train`` command (CPU laptop to GPU cluster)."""
    p.add_argument("--max-epochs", type=int, help="epochs of the whole run (raise it with --resume to train longer)")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astrolearn",
        description="Simulate, train, compare with classical methods and apply deep networks "
        "to astronomical instrument data.",
    )
    parser.add_argument("--version", action="version", version=f"astrolearn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for domain in DOMAINS:
        try:
            module = importlib.import_module(f"astrolearn.{domain}.cli")
        except ModuleNotFoundError as exc:
            if exc.name != f"astrolearn.{domain}.cli":
                raise
            continue
        module.register(sub)
    from .demo import register as register_demo

    register_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except UserError as exc:
        print(f"astrolearn: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("astrolearn: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
