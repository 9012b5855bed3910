"""Name -> object registries with "did you mean" errors.

One small class serves every kind of named thing (datasets, threat families); named threats and model
cards are files whose stem is the name, and use :func:`unknown_name` for the same error message.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from robench.core.errors import UsageError

T = TypeVar("T")


def did_you_mean(name: str, known: Iterable[str], listing: str | None = "known") -> str:
    """``"; did you mean 'eps'?"`` with the closest known names, else ``"; <listing>: a, b"`` (nothing
    when ``listing`` is None: a library's thousands of names are no help). The one suggestion helper of
    every "unknown ..." error (names, keys, library specs)."""
    known = sorted(str(k) for k in known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        return f"; did you mean {' or '.join(repr(c) for c in close)}?"
    return f"; {listing}: {', '.join(known) or '(none)'}" if listing else ""


def unknown_name(kind: str, name: str, known: Iterable[str], listing: str | None = "known") -> UsageError:
    """The error for an unknown ``name`` of ``kind``, suggesting the closest known names."""
    return UsageError(f"unknown {kind} {name!r}{did_you_mean(name, known, listing)}")


class Registry(Generic[T]):
    """A mapping from names to objects of one ``kind`` (the word used in error messages)."""

    def __init__(self, kind: str, name_attr: str | None = None):
        self.kind = kind
        self.name_attr = name_attr  # an attribute that registering sets to the name (a family's ``family``)
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("pgd")`` registers the decorated object under ``name``.

        With ``name_attr``, the object also gets that attribute set to ``name``, so a name is written once.
        """

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if self.name_attr:
                setattr(obj, self.name_attr, name)
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
