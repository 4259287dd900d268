"""Probe parameters: building them from TOML values and from ``-p key=value`` text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

import pytest

from hpcbench.core.errors import ConfigError, ParamError
from hpcbench.probes.base import ParamSpec, build_params, check, param_specs, params_as_dict


@dataclass(frozen=True)
class DemoParams:
    size: int = field(default=8, metadata={"help": "elements"})
    ratio: float = 0.5
    verbose: bool = False
    label: str = "x"
    sizes: list[int] = field(default_factory=lambda: [1, 2], metadata={"help": "list of sizes"})
    node: int | None = None
    limit: Optional[float] = None  # noqa: UP045 - typing.Optional must work too

    def __post_init__(self) -> None:
        check(self.size > 0, "demo", "size", f"must be > 0, got {self.size}")
        check(0 <= self.ratio <= 1, "demo", "ratio", f"must be within 0..1, got {self.ratio}")


class DemoProbe:
    name: ClassVar[str] = "demo"
    description: ClassVar[str] = "a probe for tests"
    Params: ClassVar[type] = DemoParams
    requires: ClassVar[tuple] = ()
    expands: ClassVar[dict[str, str]] = {"numa": "node"}


@dataclass(frozen=True)
class RaisingParams:
    n: int = 1

    def __post_init__(self) -> None:
        if self.n == 13:
            raise ValueError("thirteen is unlucky")


class RaisingProbe:
    name: ClassVar[str] = "raising"
    Params: ClassVar[type] = RaisingParams


def test_defaults_when_no_values() -> None:
    p = build_params(DemoProbe, {})
    assert p == DemoParams()
    assert p.sizes == [1, 2]


def test_toml_values() -> None:
    p = build_params(
        DemoProbe,
        {"size": 64, "ratio": 1, "verbose": True, "label": "big", "sizes": [4, 8], "node": 1, "limit": 2.5},
    )
    assert p == DemoParams(size=64, ratio=1.0, verbose=True, label="big", sizes=[4, 8], node=1, limit=2.5)
    assert isinstance(p.ratio, float)  # an integer is accepted for a float parameter


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("size", "64", 64),
        ("size", "0x10", 16),
        ("ratio", "0.25", 0.25),
        ("ratio", "1", 1.0),
        ("verbose", "true", True),
        ("verbose", "Yes", True),
        ("verbose", "on", True),
        ("verbose", "1", True),
        ("verbose", "false", False),
        ("verbose", "no", False),
        ("verbose", "OFF", False),
        ("label", "hello", "hello"),
        ("label", "42", "42"),
        ("sizes", "1, 2,3", [1, 2, 3]),
        ("sizes", "", []),
        ("node", "3", 3),
        ("node", "none", None),
        ("node", "None", None),
        ("node", "", None),
        ("limit", "0.75", 0.75),
        ("limit", "none", None),
    ],
)
def test_from_text(key: str, text: str, value: object) -> None:
    p = build_params(DemoProbe, {key: text}, from_text=True)
    assert getattr(p, key) == value
    assert type(getattr(p, key)) is type(value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("size", "64", "expected an integer"),  # text only with from_text
        ("size", 1.5, "expected an integer"),
        ("size", True, "expected an integer"),
        ("ratio", "0.5", "expected a number"),
        ("ratio", False, "expected a number"),
        ("verbose", "true", "expected true or false"),
        ("verbose", 1, "expected true or false"),
        ("label", 3, "expected a string"),
        ("sizes", 3, "expected a list of int"),
        ("sizes", [1, "two"], "expected an integer"),
        ("node", "1", "expected int | None"),
        ("limit", "x", "expected float | None"),
    ],
)
def test_wrong_type_from_toml(key: str, value: object, expected: str) -> None:
    with pytest.raises(ParamError) as info:
        build_params(DemoProbe, {key: value})
    assert info.value.probe == "demo"
    assert info.value.key == key
    assert expected in str(info.value)
    assert f"parameter {key!r}" in str(info.value)


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("size", "sixty", "expected an integer"),
        ("size", "1.5", "expected an integer"),
        ("ratio", "fast", "expected a number"),
        ("verbose", "maybe", "expected true or false"),
        ("sizes", "1,x", "expected an integer"),
        ("node", "first", "expected int | None"),
    ],
)
def test_wrong_type_from_text(key: str, text: str, expected: str) -> None:
    with pytest.raises(ParamError, match=expected) as info:
        build_params(DemoProbe, {key: text}, from_text=True)
    assert info.value.key == key


def test_unknown_key_names_the_key_and_the_known_ones() -> None:
    with pytest.raises(ParamError) as info:
        build_params(DemoProbe, {"sise": 3, "size": 4})
    err = info.value
    assert isinstance(err, ConfigError)
    assert err.key == "sise"
    assert "'sise'" in str(err)
    assert "unknown parameter" in str(err)
    assert str(err).endswith("known: label, limit, node, ratio, size, sizes, verbose")


def test_post_init_validation_through_check() -> None:
    with pytest.raises(ParamError) as info:
        build_params(DemoProbe, {"size": 0})
    assert info.value.key == "size"
    assert "must be > 0, got 0" in str(info.value)

    with pytest.raises(ParamError) as info:
        build_params(DemoProbe, {"ratio": "1.5"}, from_text=True)
    assert info.value.key == "ratio"
    assert "within 0..1" in str(info.value)


def test_post_init_value_error_becomes_param_error() -> None:
    with pytest.raises(ParamError, match="thirteen is unlucky") as info:
        build_params(RaisingProbe, {"n": 13})
    assert info.value.probe == "raising"


def test_check_helper() -> None:
    check(True, "p", "k", "never raised")
    with pytest.raises(ParamError, match=r"probe 'p': parameter 'k': bad value"):
        check(False, "p", "k", "bad value")


def test_param_specs() -> None:
    specs = {s.name: s for s in param_specs(DemoParams)}
    assert list(specs) == ["size", "ratio", "verbose", "label", "sizes", "node", "limit"]
    assert specs["size"] == ParamSpec("size", "int", 8, "elements")
    assert specs["ratio"] == ParamSpec("ratio", "float", 0.5, "")
    assert specs["verbose"].type == "bool"
    assert specs["label"].type == "str"
    assert specs["sizes"] == ParamSpec("sizes", "list[int]", [1, 2], "list of sizes")
    assert specs["node"].type == "int | None"
    assert specs["node"].default is None
    assert specs["limit"].type == "float | None"


def test_params_as_dict() -> None:
    assert params_as_dict(DemoParams(size=3)) == {
        "size": 3,
        "ratio": 0.5,
        "verbose": False,
        "label": "x",
        "sizes": [1, 2],
        "node": None,
        "limit": None,
    }
