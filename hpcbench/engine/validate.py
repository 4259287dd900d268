"""``hpcbench validate FILE...`` and ``hpcbench schema record``: records against the published schema.

A record of an older schema version is migrated first (``hpcbench.engine.record.migrate``), so what
is checked is what hpcbench would read. Each problem is one line, ``file: path.to.field: why``;
the exit code is 0 when every file is a valid record, 4 otherwise. jsonschema (the reference
implementation of JSON Schema) is imported only here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from hpcbench.core.errors import ConfigError
from hpcbench.engine.record import migrate, record_schema

#: the schema as shipped in the package (generated from hpcbench.engine.record; a test keeps them equal)
SHIPPED = "schemas/record.schema.json"
SCHEMAS = {"record": record_schema}
_MAX_WHY = 240


def shipped_schema_text() -> str:
    return resources.files("hpcbench").joinpath(SHIPPED).read_text(encoding="utf-8")


def schema_text(name: str) -> str:
    """The JSON text of a published schema, as ``hpcbench schema NAME`` prints it."""
    if name not in SCHEMAS:
        raise ConfigError(f"no schema named {name!r}; known: {', '.join(SCHEMAS)}")
    return json.dumps(SCHEMAS[name](), indent=1) + "\n"


def _path(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts) or "(top)"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_WHY else text[: _MAX_WHY - 3] + "..."


@functools.cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(record_schema())


def problems(data: Any) -> list[tuple[str, str]]:
    """(path, why) of everything in ``data`` (parsed JSON) that is not a valid record; [] if valid."""
    if not isinstance(data, dict):
        return [("(top)", f"expected an object, got {type(data).__name__}")]
    if "schema_version" not in data:
        return [("schema_version", "missing: not an hpcbench result record")]
    try:
        data = migrate(data)
    except ConfigError as exc:
        return [("schema_version", str(exc).split(": ", 1)[-1])]
    found = []
    validator = _validator()
    for error in validator.iter_errors(data):
        while error.validator in ("anyOf", "oneOf") and error.context:
            # X | None and the like: the option that got furthest says what is wrong
            error = max(error.context, key=lambda e: len(e.absolute_path))
        found.append((_path(error.absolute_path), _short(error.message)))
    return sorted(set(found))


def validate_file(path: str | Path) -> list[str]:
    """``file: path: why`` lines for one file; [] when it is a valid record."""
    p = Path(path)
    try:
        data = json.loads(p.read_bytes())
    except FileNotFoundError:
        return [f"{p}: (top): no such file"]
    except (OSError, ValueError) as exc:
        return [f"{p}: (top): not readable JSON: {_short(str(exc))}"]
    return [f"{p}: {where}: {why}" for where, why in problems(data)]


def validate_files(paths: list[str]) -> tuple[int, list[str]]:
    """(number of files checked, every problem line) for files and folders (``*.json`` in them)."""
    files: list[Path] = []
    for item in paths:
        p = Path(item)
        files.extend(
            sorted(q for q in p.rglob("*.json") if not q.name.startswith(".")) if p.is_dir() else [p]
        )
    lines = [line for f in files for line in validate_file(f)]
    return len(files), lines
