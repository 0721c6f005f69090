"""YAML run configurations: load, merge defaults and overrides, dump the resolved result.

A configuration is a nested mapping. Defaults, a user file and command-line overrides are
combined by :func:`deep_merge`: nested mappings are merged key by key, anything else (numbers,
strings, lists) is replaced as a whole. Overrides are written ``section.key=value`` with the value
parsed as YAML (``optimizer.lr=3e-4``, ``model.blocks=[]``, ``scheduler.name=null``).

This module only needs PyYAML so that the command line can read a configuration quickly.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from .errors import UserError


class _Loader(yaml.SafeLoader):
    """Safe YAML loader reading ``1e-3`` as a float, as YAML 1.2 does (PyYAML, being YAML 1.1,
    would read a string and ``optimizer.lr=1e-3`` would fail far from where it was written)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _load_yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def deep_merge(base: Mapping, override: Mapping, strict: bool = False, _where: str = "") -> dict:
    """Merge ``override`` into a copy of ``base``.

    Parameters
    ----------
    base : mapping
        Values used where ``override`` says nothing; not modified.
    override : mapping
        Values that win. A nested mapping is merged into the corresponding mapping of ``base``;
        any other value (including a list or ``None``) replaces it.
    strict : bool
        Reject keys of ``override`` that ``base`` does not have, wherever ``base`` holds a mapping,
        so that a misspelt option is an error instead of being silently ignored, and values that
        would replace such a mapping by something else (``scheduler: cosine``), and values of
        another type than the default's (``optimizer.lr=abc``; see :func:`_check_type`). A
        section whose default is not a mapping (``None``, e.g. a free-form network description)
        is not checked.

    Returns
    -------
    dict
        The merged configuration (a deep copy: sharing no mutable value with the inputs).

    Raises
    ------
    UserError
        With ``strict``, on an unknown key, a mapping replaced by another value or a value of
        the wrong type.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        where = f"{_where}{key}"
        if strict and key not in merged:
            known = ", ".join(map(str, merged)) or "none"
            raise UserError(f"unknown configuration key {where!r} (known here: {known})")
        if strict and isinstance(merged[key], Mapping) and not isinstance(value, Mapping):
            raise UserError(f"configuration key {where!r} must be a mapping of "
                            f"{', '.join(map(str, merged[key]))}, not {value!r}")
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value, strict, f"{where}.")
        else:
            if strict:
                _check_type(where, merged[key], value)
            merged[key] = copy.deepcopy(value)
    return merged


def _check_type(where: str, default, value) -> None:
    """Refuse a value of another kind than the default's, where the kind is unambiguous.

    Booleans, numbers and lists must stay so (an integer where a float is expected is fine);
    ``None`` is accepted anywhere (an option switched off). Defaults that are strings or ``None``
    are not checked: their options also take other types (``trainer.devices: 4``).
    """
    if value is None:
        return
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, expected = is_number and isinstance(value, int), "an integer"
    elif isinstance(default, float):
        ok, expected = is_number, "a number"
    elif isinstance(default, list):
        ok, expected = isinstance(value, list), "a list"
    else:
        return
    if not ok:
        raise UserError(f"configuration key {where!r}: expected {expected}, got {value!r}")


def parse_override(text: str) -> dict:
    """Turn ``"a.b.c=value"`` into ``{"a": {"b": {"c": value}}}`` (value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise UserError(f"override {text!r}: expected section.key=value")
    try:
        value = _load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UserError(f"override {text!r}: value is not valid YAML ({_first_line(exc)})") from None
    for part in reversed(parts):
        value = {part: value}
    return value


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML file whose top level is a mapping (``UserError`` otherwise)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no such configuration file") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable YAML file ({exc.__class__.__name__})") from None
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: invalid YAML ({_first_line(exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping of sections, not {type(data).__name__}")
    return data


def load_config(
    source: str | os.PathLike | Mapping | None,
    overrides: Iterable[str | Mapping] = (),
    defaults: Mapping | None = None,
) -> dict:
    """Resolve a configuration: ``defaults``, then ``source``, then each override in order.

    Parameters
    ----------
    source : path-like, mapping or None
        A YAML file or an already loaded mapping; ``None`` for the defaults alone.
    overrides : iterable of str or mapping
        ``"section.key=value"`` strings (see :func:`parse_override`) or mappings.
    defaults : mapping, optional
        Complete set of known keys and their default values. When given, every key of ``source``
        and of the overrides must exist in it (see ``strict`` in :func:`deep_merge`).

    Returns
    -------
    dict
        The resolved configuration.
    """
    if source is None:
        config = {}
    elif isinstance(source, Mapping):
        config = copy.deepcopy(dict(source))
    else:
        config = read_yaml(source)
    for override in overrides:
        config = deep_merge(config, parse_override(override) if isinstance(override, str) else override)
    if defaults is not None:
        config = deep_merge(defaults, config, strict=True)
    return config


def to_plain(value):
    """``value`` with tuples, numpy scalars/arrays and paths turned into YAML-safe builtins."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        return value.tolist()
    return value


def dump_config(config: Mapping, path: str | os.PathLike) -> Path:
    """Write ``config`` as YAML (atomically, keys in their given order) and return the path."""
    from .io.shards import atomic_write  # h5py import, only paid when writing

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        tmp.write_text(yaml.safe_dump(to_plain(config), sort_keys=False, default_flow_style=False))
    return path


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
