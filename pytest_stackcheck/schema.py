"""Build frozen dataclasses from parsed TOML, with errors an operator can act on.

The stack profile model in ``profile.py`` is a tree of dataclasses whose fields
carry a ``help`` text in their metadata. ``build`` walks that tree, checks each
key and type, and raises ``SchemaError`` naming the dotted key, the offending
value, the reason and the fix (taken from the field's help text).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

T = TypeVar("T")

_MISSING = dataclasses.MISSING


class SchemaError(ValueError):
    """A value in a parsed document does not fit the model."""

    def __init__(self, key: str, value: object, reason: str, fix: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        self.fix = fix
        shown = _show(value)
        where = f"key '{key}'" if key else "the document"
        value_part = "" if value is _ABSENT else f" = {shown}"
        super().__init__(f"{where}{value_part} is invalid: {reason}; fix: {fix}")


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def help_of(field: dataclasses.Field[Any]) -> str:
    """Return the fix text stored in a field's metadata."""
    text = field.metadata.get("help", "")
    return str(text) if text else f"see the documented form of '{field.name}'"


def spec(default: Any = _MISSING, *, help: str, factory: Any = _MISSING) -> Any:
    """Declare a model field with the fix text shown when its value is invalid."""
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def build(cls: type[T], data: object, key: str = "", fix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, raising SchemaError on any misfit."""
    if not isinstance(data, Mapping):
        raise SchemaError(key, data, "expected a table", fix or "write it as a table")

    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    toml_names = {name.replace("_", "-"): name for name in fields}
    toml_names.update({name: name for name in fields})

    unknown = [k for k in data if k not in toml_names]
    if unknown:
        bad = str(unknown[0])
        close = difflib.get_close_matches(bad, sorted(fields), n=1)
        hint = f"did you mean '{close[0]}'?" if close else "remove it"
        known = ", ".join(sorted(fields))
        raise SchemaError(
            _join(key, bad),
            data[bad],
            f"unknown key (known keys here: {known})",
            hint,
        )

    values: dict[str, Any] = {}
    for raw_name, raw_value in data.items():
        name = toml_names[raw_name]
        field = fields[name]
        values[name] = convert(
            hints[name], raw_value, _join(key, raw_name), help_of(field)
        )

    for name, field in fields.items():
        required = field.default is _MISSING and field.default_factory is _MISSING
        if required and name not in values:
            raise SchemaError(
                _join(key, name), _ABSENT, "missing required key", help_of(field)
            )

    return cls(**values)


def convert(hint: Any, value: object, key: str, fix: str) -> Any:
    """Check ``value`` against type ``hint`` and return it in the model's form."""
    origin = get_origin(hint)

    if origin in (typing.Union, types.UnionType):
        return _convert_union(hint, value, key, fix)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            listed = ", ".join(repr(c) for c in choices)
            raise SchemaError(key, value, f"expected one of {listed}", fix)
        return value
    if origin is tuple:
        return _convert_tuple(hint, value, key, fix)
    if origin is dict:
        return _convert_dict(hint, value, key, fix)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key, fix)  # type: ignore[arg-type]
    return _convert_scalar(hint, value, key, fix)


def _convert_union(hint: Any, value: object, key: str, fix: str) -> Any:
    errors: list[SchemaError] = []
    for option in get_args(hint):
        try:
            return convert(option, value, key, fix)
        except SchemaError as exc:
            errors.append(exc)
    names = " or ".join(_type_name(option) for option in get_args(hint))
    raise SchemaError(key, value, f"expected {names}", fix)


def _convert_tuple(hint: Any, value: object, key: str, fix: str) -> Any:
    args = get_args(hint)
    if not isinstance(value, list):
        raise SchemaError(key, value, "expected an array", fix)
    item_type = args[0]
    return tuple(
        convert(item_type, item, f"{key}[{index}]", fix)
        for index, item in enumerate(value)
    )


def _convert_dict(hint: Any, value: object, key: str, fix: str) -> Any:
    _, value_type = get_args(hint)
    if not isinstance(value, Mapping):
        raise SchemaError(key, value, "expected a table", fix)
    return {
        str(k): convert(value_type, v, _join(key, str(k)), fix)
        for k, v in value.items()
    }


def _convert_scalar(hint: Any, value: object, key: str, fix: str) -> Any:
    # TOML booleans are ints in Python, so bool is checked before int.
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"schema has an unsupported type {hint!r} at {key}")
    raise SchemaError(key, value, f"expected {_type_name(hint)}", fix)


def _type_name(hint: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if get_origin(hint) is tuple:
        return "an array"
    if get_origin(hint) is dict or dataclasses.is_dataclass(hint):
        return "a table"
    return str(hint)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
