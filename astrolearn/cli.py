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
DOMAINS = ("psf", "redshift", "spectra", "cophasing", "hpc")


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
