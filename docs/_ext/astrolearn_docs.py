"""Sphinx directives that generate reference pages from the code itself.

``.. astrolearn-cli::`` documents every ``astrolearn`` command from the parser that
``astrolearn.cli.build_parser`` builds, so that the reference cannot drift from the CLI.
``.. astrolearn-api:: PACKAGE`` documents every public module of ``PACKAGE`` (recursively; modules
whose name starts with ``_`` and the ``cli`` modules are left out: the CLI has its own page), so
that a new domain or module appears without editing the documentation.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

#: Width of the generated help text: wide enough for the option columns, narrow enough to read.
HELP_WIDTH = 100
#: Section underline characters below the page title, by depth of the command.
UNDERLINES = "=-~^"


def _subcommands(parser: argparse.ArgumentParser):
    """(name, parser) of each direct subcommand, in help order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _help_texts(parser: argparse.ArgumentParser) -> dict[str, str]:
    """One-line help of each direct subcommand, as ``--help`` lists it."""
    texts = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            texts.update({choice.dest: choice.help or "" for choice in action._choices_actions})
    return texts


def cli_rst(parser: argparse.ArgumentParser, depth: int = 0, helps: str = "") -> list[str]:
    """reStructuredText lines documenting ``parser`` and, recursively, its subcommands."""
    lines = []
    if depth:
        title = f"``{parser.prog}``"
        lines += [title, UNDERLINES[depth - 1] * len(title), ""]
        if helps:
            lines += [helps[0].upper() + helps[1:] + ".", ""]
    lines += ["::", ""]
    lines += ["    " + line for line in parser.format_help().rstrip().splitlines()]
    lines.append("")
    texts = _help_texts(parser)
    for name, sub in _subcommands(parser):
        lines += cli_rst(sub, depth + 1, texts.get(name, ""))
    return lines


class CliDirective(SphinxDirective):
    """The whole ``astrolearn`` command line, one section per command."""

    def run(self):
        from astrolearn.cli import build_parser

        # argparse wraps help to $COLUMNS: fix it so that the page does not depend on the terminal.
        previous = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = str(HELP_WIDTH)
        try:
            lines = cli_rst(build_parser())
        finally:
            if previous is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = previous
        return self._parse(lines)

    def _parse(self, lines):
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, f"<{self.name}>"), node)
        return node.children


def public_modules(package: str) -> list[str]:
    """``package`` and its public submodules, recursively, sorted."""
    names = [package]
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, prefix=package + "."):
        leaf = info.name.rsplit(".", 1)[1]
        if leaf.startswith("_") or leaf == "cli":
            continue
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        names.append(info.name)
    return sorted(names)


class ApiDirective(CliDirective):
    """``automodule`` of every public module of a package, one section each."""

    required_arguments = 1

    def run(self):
        lines = []
        for name in public_modules(self.arguments[0]):
            title = f"``{name}``"
            lines += [title, "-" * len(title), "", f".. automodule:: {name}", "   :members:", ""]
        return self._parse(lines)


#: ``|x|`` (an absolute value in plain-text docstrings), which reStructuredText reads as a substitution.
_BARS = re.compile(r"(?<![\\|\w`])\|(\S[^|\n]*?\S|\S)\|(?![\w|`])")
#: A numpydoc parameter line, ``name : type``, whose type may hold a ``*`` (``shape (N, *input_shape)``).
_PARAM_LINE = re.compile(r"^(\s*\w+ : )(.*)$")


def plain_text_docstring(app, what, name, obj, options, lines):
    """Keep the docstrings' plain-text notation literal: ``|dz|`` and ``*shape`` are not markup."""
    for i, line in enumerate(lines):
        line = _BARS.sub(r"\\|\1\\|", line)
        match = _PARAM_LINE.match(line)
        if match:
            line = match.group(1) + match.group(2).replace("*", r"\*")
        lines[i] = line


def setup(app):
    app.connect("autodoc-process-docstring", plain_text_docstring, priority=100)  # before napoleon
    app.add_directive("astrolearn-cli", CliDirective)
    app.add_directive("astrolearn-api", ApiDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
