"""Settings of composed configs by dotted keys: what ``--set learner.lr=3e-4`` does.

A config is a dataclass whose fields are values or other config dataclasses (its parts:
``MBPOConfig.model`` is an ``EnsembleConfig``). A key names one value by its path, ``"learner.lr"``.

- :func:`setting_keys`: every key of a config class.
- :func:`apply_overrides`: a new config with some keys changed; command-line strings become the field's
  type (``"3e-4"`` → 3e-4, ``"64,64"`` → (64, 64), ``"true"`` → True, ``"none"`` → None). Every config
  on a changed path is rebuilt, so its own checks run again.
- :func:`config_from_dict`: the config back from the nested dicts of :func:`dataclasses.asdict` (a checkpoint's).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["apply_overrides", "config_from_dict", "setting_keys"]


def _is_config(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _field_types(config_cls: type) -> dict[str, Any]:
    """Field name -> its type, for the init fields of a config class."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls) if f.init}


def setting_keys(config_cls: type, prefix: str = "") -> list[str]:
    """Every key of ``config_cls``: its value fields, then its parts' keys behind the part's name."""
    keys = []
    for name, hint in _field_types(config_cls).items():
        keys += setting_keys(hint, f"{prefix}{name}.") if _is_config(hint) else [prefix + name]
    return keys


def _convert(key: str, value: Any, hint: Any) -> Any:
    """A command-line string as a value of type ``hint`` (other values pass unchanged)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        if text.lower() in ("none", "null"):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    or_none = " or none" if optional else ""
    if hint is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"config: {key} expects true or false{or_none}, got {value!r}")
        return text.lower() in ("true", "1", "yes")
    if hint is tuple or typing.get_origin(hint) is tuple:
        try:
            return tuple(int(v) for v in text.split(","))
        except ValueError as err:
            raise ValueError(f"config: {key} expects comma-separated integers{or_none}, got {value!r}") from err
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError as err:
            expected = "an integer" if hint is int else "a number"
            raise ValueError(f"config: {key} expects {expected}{or_none}, got {value!r}") from err
    return value


class _Group(dict):
    """The changes inside one part of a config (name -> value or _Group)."""


def _unknown(key: str, owner: str, config_cls: type, moved: Mapping[str, str]) -> ValueError:
    if key in moved:
        return ValueError(f"config: {owner} has no setting {key!r}; it moved to {moved[key]!r}")
    keys = setting_keys(config_cls)
    same_name = [k for k in keys if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
    hint = f"did you mean {same_name[0]!r}? " if len(same_name) == 1 else ""
    return ValueError(f"config: {owner} has no setting {key!r}; {hint}expected one of {', '.join(keys)}")


def _rebuild(config: Any, changes: _Group, path: str) -> Any:
    values = {name: _rebuild(getattr(config, name), change, f"{path}{name}.") if isinstance(change, _Group) else change
              for name, change in changes.items()}
    try:
        return dataclasses.replace(config, **values)  # runs the config's own checks again
    except (TypeError, ValueError) as err:
        where = f" in {path[:-1]!r}" if path else ""
        raise ValueError(f"config{where}: {err}") from err


def apply_overrides(config: Any, overrides: Mapping[str, Any], *, owner: str,
                    moved: Mapping[str, str] | None = None) -> Any:
    """A copy of ``config`` with ``overrides`` (dotted key -> value or command-line string) applied.

    Args:
        config: a config dataclass (its parts may be config dataclasses in turn).
        overrides: e.g. ``{"learner.lr": "3e-4", "model.ensemble_size": 7}``.
        owner: the config's name in error messages (the algorithm, e.g. ``"mbpo"``).
        moved: old key -> its key now, for settings that moved (an old key's error names the new one).
    Raises:
        ValueError: an unknown key (naming the valid ones, or where an old key moved), a key naming a
            whole part, a value that does not convert, or a value the config's own checks refuse.
    """
    changes = _Group()
    for key, value in overrides.items():
        group, config_cls, names = changes, type(config), key.split(".")
        for depth, name in enumerate(names):
            fields = _field_types(config_cls)
            if name not in fields:
                raise _unknown(key, owner, type(config), moved or {})
            hint, last = fields[name], depth == len(names) - 1
            if _is_config(hint) and last:
                raise ValueError(f"config: {owner}'s {key!r} is a group of settings; set one of "
                                 f"{', '.join(setting_keys(hint, key + '.'))}")
            if not _is_config(hint) and not last:
                raise _unknown(key, owner, type(config), moved or {})
            if last:
                group[name] = _convert(key, value, hint)
            else:
                group, config_cls = group.setdefault(name, _Group()), hint
    return _rebuild(config, changes, "") if changes else config


def config_from_dict(config_cls: type, data: Mapping[str, Any]) -> Any:
    """``config_cls`` from ``dataclasses.asdict``'s nested dicts (fields missing from ``data`` keep their defaults)."""
    fields = _field_types(config_cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"config: {config_cls.__name__} has no field {', '.join(unknown)}; "
                         f"expected some of {', '.join(fields)}")
    return config_cls(**{name: config_from_dict(fields[name], value) if _is_config(fields[name]) else value
                         for name, value in data.items()})
