"""The strict loader every config kind goes through: each rule, and that the shipped configs obey it."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import pytest

from robench.core import schema
from robench.core.errors import UsageError
from robench.threats import create_threat


@dataclasses.dataclass(frozen=True)
class Inner:
    mean: list[float]


@dataclasses.dataclass(frozen=True)
class Example:
    count: int
    size: float
    norm: Literal["linf", "l2"]
    on: bool = False
    label: str | None = None
    inner: Inner | None = None
    spec: str | Inner | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    name: str = ""


GOOD = {"count": 3, "size": 2, "norm": "l2"}


def test_good_data_loads_and_converts_numbers_to_float():
    ex = schema.load(Example, {**GOOD, "inner": {"mean": [1, 0.5]}}, "ex")
    assert ex == Example(count=3, size=2.0, norm="l2", inner=Inner(mean=[1.0, 0.5]))
    assert type(ex.size) is float and all(type(v) is float for v in ex.inner.mean)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"count": True}, "ex: count must be an integer, got True"),
        ({"count": 2.0}, "ex: count must be an integer, got 2.0"),
        ({"size": float("nan")}, "ex: size must be a finite number, got nan"),
        ({"size": float("inf")}, "ex: size must be a finite number, got inf"),
        ({"size": "8/255"}, "ex: size must be a finite number"),
        ({"norm": "l3"}, "ex: norm must be one of 'linf', 'l2', got 'l3'"),
        ({"on": 1}, "ex: on must be true or false, got 1"),
        ({"label": 5}, "ex: label must be a string"),
        ({"inner": {"mean": [1, True]}}, r"ex: inner: mean\[1\] must be a finite number, got True"),
        ({"inner": {"mena": [1]}}, "ex: inner: unknown key 'mena'; did you mean 'mean'"),
        ({"inner": [1]}, "ex: inner must be a mapping"),
        ({"spec": {"mean": "x"}}, "ex: spec: mean must be a list"),  # the mapping-shaped member explains
        ({"spec": 3}, "ex: spec must be a string or a mapping or null, got 3"),
        ({"cuont": 1}, "ex: unknown key 'cuont'; did you mean 'count'"),
        ({"name": "x"}, "ex: unknown key 'name'"),  # fixed fields never come from the data
    ],
)
def test_every_rule_is_a_one_line_error(change, message):
    with pytest.raises(UsageError, match=message) as info:
        schema.load(Example, {**GOOD, **change}, "ex", name="fixed")
    assert "\n" not in str(info.value)


def test_missing_keys_are_named_together():
    with pytest.raises(UsageError, match="ex: missing keys 'norm', 'size'"):
        schema.load(Example, {"count": 1}, "ex")


def test_a_non_mapping_is_refused():
    with pytest.raises(UsageError, match="ex must be a mapping, got"):
        schema.load(Example, [1, 2], "ex")


@pytest.mark.parametrize(
    "override, message",
    [
        ({"steps": True}, "steps must be an integer, got True"),
        ({"restarts": 1.5}, "restarts must be an integer"),
        ({"eps": float("nan")}, "eps must be a finite number"),
        ({"norm": "l1"}, "norm must be one of 'linf', 'l2'"),
        ({"stpes": 3}, "did you mean 'steps'"),
    ],
)
def test_threat_parameters_go_through_the_loader(override, message):
    with pytest.raises(UsageError, match=message) as info:
        create_threat("pgd_linf", "mnist5k", **override)
    assert "threat 'pgd_linf' (family pgd)" in str(info.value)


def test_family_name_is_set_once_by_the_registry():
    assert create_threat("spatial", "mnist5k").family == "spatial_grid"
    assert create_threat("uap_linf", "mnist5k").family == "uap"
