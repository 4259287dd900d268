"""Frozen dataclasses <-> JSON, and the JSON Schema of their JSON form, from one set of type hints.

The record's classes (``hpcbench.engine.record``, ``hpcbench.node.inventory``,
``hpcbench.core.measurement``) are plain frozen dataclasses with type hints. From those hints
``decode`` builds an instance from JSON
data (nested dataclasses, lists as tuples, a missing key taking its field's default, so
records written before a field existed still load), and ``schema`` writes the JSON Schema
(draft 2020-12) that the published ``record`` schema is made of. A class that serialises
itself differently says so with ``as_dict``/``from_dict`` and describes its extra keys in
``JSON_EXTRA``; a field's ``metadata={"doc": ...}`` becomes the property's description.

Supported types: bool, int, float, str, None, Any, ``X | None``, unions, ``list[X]``,
``tuple[X, ...]``, ``dict[str, X]``, ``Literal[...]``, str Enums and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

DRAFT = "https://json-schema.org/draft/2020-12/schema"


class DecodeError(ValueError):
    """Data that does not fit a class: ``path`` says where (``checks.3.measurements.0.value``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '(top)'}: {message}")
        self.path = path


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def decode(tp: Any, data: Any, path: str = "") -> Any:
    """``data`` (parsed JSON) as an instance of ``tp``; DecodeError naming the path on a mismatch."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return decode(arg, data, path)
            except DecodeError as exc:
                errors.append(str(exc))
        raise DecodeError(path, f"fits none of {_name(tp)} ({'; '.join(errors)})")
    if origin is Literal:
        if data not in typing.get_args(tp):
            raise DecodeError(path, f"expected one of {list(typing.get_args(tp))}, got {data!r}")
        return data
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise DecodeError(path, f"expected a list, got {_kind(data)}")
        (arg, *_) = typing.get_args(tp) or (Any,)
        items = [decode(arg, v, _join(path, i)) for i, v in enumerate(data)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(data, dict):
            raise DecodeError(path, f"expected an object, got {_kind(data)}")
        _, arg = typing.get_args(tp) or (str, Any)
        return {str(k): decode(arg, v, _join(path, k)) for k, v in data.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            raise DecodeError(path, f"expected one of {[m.value for m in tp]}, got {data!r}") from None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, data, path)
    if tp is type(None):
        if data is not None:
            raise DecodeError(path, f"expected null, got {_kind(data)}")
        return None
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise DecodeError(path, f"expected a number, got {_kind(data)}")
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise DecodeError(path, f"expected an integer, got {_kind(data)}")
        return data
    if tp in (str, bool):
        if not isinstance(data, tp):
            raise DecodeError(path, f"expected {_name(tp)}, got {_kind(data)}")
        return data
    raise TypeError(f"hpcbench.core.codec cannot decode {tp!r}")


def _decode_dataclass(cls: type, data: Any, path: str) -> Any:
    if "from_dict" not in cls.__dict__:
        return decode_fields(cls, data, path)
    if not isinstance(data, Mapping):
        raise DecodeError(path, f"expected an object, got {_kind(data)}")
    try:
        return cls.from_dict(data)  # type: ignore[attr-defined]
    except DecodeError as exc:
        raise DecodeError(_join(path, exc.path), str(exc).split(": ", 1)[-1]) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(path, f"not a valid {cls.__name__}: {type(exc).__name__}: {exc}") from None


def decode_fields(cls: type, data: Any, path: str = "") -> Any:
    """A dataclass from an object of its fields (nested values decoded by their type hints); a
    missing key takes the field's default; unknown keys are ignored (a newer writer's)."""
    if not isinstance(data, Mapping):
        raise DecodeError(path, f"expected an object, got {_kind(data)}")
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = decode(hints[f.name], data[f.name], _join(path, f.name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise DecodeError(_join(path, f.name), "missing")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise DecodeError(path, str(exc)) from None


def encode(obj: Any) -> Any:
    """The JSON form of ``obj``: ``as_dict()`` where a class has one, else its fields."""
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return encode_fields(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    return obj


def encode_fields(obj: Any) -> dict[str, Any]:
    """A dataclass instance as an object of its fields, nested values encoded."""
    return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


# ---------------------------------------------------------------------------
# JSON Schema


def schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of ``tp``'s JSON form; dataclasses go into ``defs`` (by class name) and are
    referenced from there."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return {}
    if origin in (typing.Union, types.UnionType):
        options = [schema(a, defs) for a in typing.get_args(tp)]
        return {"anyOf": options}
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin in (list, tuple):
        (arg, *_) = typing.get_args(tp) or (Any,)
        return {"type": "array", "items": schema(arg, defs)}
    if origin is dict:
        _, arg = typing.get_args(tp) or (str, Any)
        return {"type": "object", "additionalProperties": schema(arg, defs)}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # a placeholder first: classes may refer to themselves
            defs[name] = _dataclass_schema(tp, defs)
        return {"$ref": f"#/$defs/{name}"}
    simple = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string"}
    if tp in simple:
        return {"type": simple[tp]}
    raise TypeError(f"hpcbench.core.codec has no schema for {tp!r}")


def _dataclass_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = _hints(cls)
    props: dict[str, Any] = {}
    required = []
    for f in dataclasses.fields(cls):
        prop = schema(hints[f.name], defs)
        if f.metadata.get("doc"):
            prop = {**prop, "description": f.metadata["doc"]}
        props[f.name] = prop
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    extra: dict[str, Any] = getattr(cls, "JSON_EXTRA", {})
    for key, given in extra.items():
        fragment = dict(given) if given is not None else None
        if fragment is None:  # a field that is not written
            props.pop(key, None)
            if key in required:
                required.remove(key)
        else:
            props[key] = fragment
            if fragment.get("x-required", True):
                required.append(key)
            fragment.pop("x-required", None)
    out: dict[str, Any] = {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    if doc and not doc.startswith(cls.__name__ + "("):
        out = {"description": " ".join(doc.split()), **out}
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)
    )


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)
