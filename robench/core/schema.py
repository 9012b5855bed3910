"""One strict loader from YAML/dict data to typed dataclasses.

Threat parameters, training recipes and their perturbations, model cards and board configs all arrive as
YAML written by people, some of them strangers. A typo must not silently drop a parameter, ``true`` must not
pass for a step count, and a NaN budget must not reach an attack; each of those is a one-line
:class:`~robench.core.errors.UsageError` naming the file or threat (``where``) and the key. Writing those
checks
once, driven by the dataclass's own type hints, keeps every config kind equally strict (before, the same
checks were written four times and some accepted ``True`` as an integer).

What a type hint means here:

- ``int``: an integer of at most 18 digits, never a bool; ``float``: a finite int or float, stored as
  ``float``;
  ``bool``: ``true``/``false`` only; ``str``: a string;
- ``Literal["linf", "l2"]``: one of a closed set (the error lists them);
- ``list[T]`` / ``tuple[T, ...]``: a list whose items are checked as ``T``; ``dict[str, T]``: a mapping;
- ``X | None``: ``None`` allowed; ``A | B``: the first member that accepts the value;
- a nested dataclass: a mapping loaded by the same rules; ``Any``: anything.

Range checks (``eps > 0``) stay in each class's ``__post_init__``, next to the parameter they concern.
This module imports no torch: board configs are loaded without it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from robench.core.errors import UsageError
from robench.core.registry import did_you_mean

T = TypeVar("T")
#: The largest integer accepted: beyond it numpy and torch overflow (and no count or size is that large).
INT_LIMIT = 10**18 - 1


def check_keys(data: Mapping, allowed, required, where: str) -> None:
    """Unknown keys (with the closest allowed one) and missing required keys, as one-line errors."""
    for key in data:
        if key not in allowed:
            raise UsageError(f"{where}: unknown key {key!r}{did_you_mean(str(key), allowed, 'known keys')}")
    missing = sorted(k for k in required if k not in data)
    if missing:
        raise UsageError(
            f"{where}: missing key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
        )


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def load(cls: type[T], data: Any, where: str, **fixed: Any) -> T:
    """``data`` (a mapping) -> an instance of dataclass ``cls``, every field checked against its hint.

    ``fixed`` fields (such as a card's ``name``, which comes from its file name) are passed through as
    given and are not accepted from ``data``. Errors from ``cls.__post_init__`` pass through unchanged.
    """
    if not isinstance(data, Mapping):
        raise UsageError(f"{where} must be a mapping, got {_shown(data)}")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init and f.name not in fixed]
    check_keys(data, {f.name for f in fields}, {f.name for f in fields if _required(f)}, where)
    values = {
        f.name: check(hints[f.name], data[f.name], f"{where}: {f.name}") for f in fields if f.name in data
    }
    return cls(**values, **fixed)


def check(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against type ``hint`` (see the module docstring); returns it, converted."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):  # True is not 1 here
            return value
        raise UsageError(f"{where} must be one of {', '.join(map(repr, args))}, got {_shown(value)}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = {}
        for member in (a for a in args if a is not type(None)):
            try:
                return check(member, value, where)
            except UsageError as e:
                errors[member] = e
        shaped = [e for member, e in errors.items() if _same_shape(member, value)]
        if len(shaped) == 1 and isinstance(value, (Mapping, list, tuple)):
            # e.g. a mapping given for `str | Normalization`: say what is wrong inside it
            raise shaped[0]
        raise UsageError(f"{where} must be {' or '.join(_name(a) for a in args)}, got {_shown(value)}")
    if dataclasses.is_dataclass(hint):
        return load(hint, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{where} must be a list, got {_shown(value)}")
        item = args[0] if args else Any
        items = [check(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise UsageError(f"{where} must be a mapping, got {_shown(value)}")
        if not args:
            return dict(value)
        return {
            check(args[0], k, f"{where} key"): check(args[1], v, f"{where}.{k}") for k, v in value.items()
        }
    return _scalar(hint, value, where)


def _scalar(hint: type, value: Any, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"{where} must be true or false, got {_shown(value)}")
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise UsageError(f"{where} must be an integer, got {_shown(value)}")
        if abs(value) > INT_LIMIT:
            raise UsageError(f"{where} is too large (at most 18 digits), got {_shown(value)}")
        return value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value):
            return float(value)
        raise UsageError(f"{where} must be a finite number, got {_shown(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise UsageError(f"{where} must be a string, got {_shown(value)}")
    raise TypeError(
        f"schema.check: unsupported type hint {hint!r} at {where}"
    )  # a bug in a dataclass, not input


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def _same_shape(hint: Any, value: Any) -> bool:
    """Whether ``value`` is of the container kind ``hint`` expects (mapping, list or scalar)."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) or hint is dict or origin is dict:
        return isinstance(value, Mapping)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    return False


def _name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) is typing.Literal:
        return " or ".join(map(repr, typing.get_args(hint)))
    names = {int: "an integer", float: "a number", bool: "true/false", str: "a string", dict: "a mapping"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) in (list, tuple):
        return "a list"
    return "a mapping" if dataclasses.is_dataclass(hint) or typing.get_origin(hint) is dict else str(hint)


def _shown(value: Any) -> str:
    """A value as an error message shows it: short, one line."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."
