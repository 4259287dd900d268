"""``include``: a suite built on other suites, so a site's suite is a few lines.

    include = "health"            # or ["health", "my-extra"]: a bundled or site suite by name, or a path
    [[check]]
    id = "node_config"            # an included check's id: these keys replace its keys;
    params = { mounts = [...] }   # params and absolute are merged key by key
    [[check]]
    id = "site_ib"                # a new id: a new check, after the included ones
    probe = "network"

An include by name is looked up in the site suite folders, then the bundled ones, skipping the
including file itself: a site's ``health.toml`` that includes ``health`` gets the bundled one.
The suite's hash covers every file it includes. Each included file is read as it is (its own
errors name it); an include cycle is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcbench.core import tomlfile

#: the keys merged key by key when a suite changes an included check
MERGED = ("params", "absolute")


@dataclass(frozen=True)
class MergedDoc(tomlfile.TomlDoc):
    """A suite document with its includes merged: the checks' line numbers are the including
    file's (``index_map``: merged check index -> its index there, None for an included check)."""

    index_map: tuple[int | None, ...] = ()
    digest: str = ""
    #: the files included (each also validated alone, so its own errors name it)
    included: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        return self.digest

    def line_of(self, key: str, table: str | None = None, index: int = 0) -> int | None:
        if table == "check":
            if index >= len(self.index_map) or self.index_map[index] is None:
                return None
            index = self.index_map[index]  # type: ignore[assignment]
        return super().line_of(key, table, index)


def _find(name: str, site: Sequence[Path], chain: tuple[Path, ...], doc: tomlfile.TomlDoc) -> Path:
    p = Path(name)
    if p.suffix == ".toml" or "/" in name:
        p = p if p.is_absolute() else Path(doc.path).parent / p
        if not p.is_file():
            raise doc.error("key 'include'", f"{name}: suite file not found", doc.line_of("include"))
        return p
    for folder in (*site, tomlfile.bundled_dir()):
        candidate = Path(folder) / f"{name}.toml"
        if candidate.is_file() and candidate.resolve() not in chain:
            return candidate
    raise doc.error("key 'include'", f"no suite named {name!r} to include", doc.line_of("include"))


def expand(
    doc: tomlfile.TomlDoc, site: Sequence[Path] = (), chain: tuple[Path, ...] = ()
) -> tomlfile.TomlDoc:
    """``doc`` with the checks of the suites it includes merged in (``doc`` itself when it has none)."""
    inc = doc.data.get("include")
    if inc is None:
        return doc
    names = [inc] if isinstance(inc, str) else inc
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise doc.error(
            "key 'include'", f"expected a suite name or a list of them, got {inc!r}", doc.line_of("include")
        )
    chain = (*chain, Path(doc.path).resolve())
    checks: list[dict[str, Any]] = []
    digest = hashlib.sha256(doc.text.encode())
    included: list[str] = []
    for name in names:
        path = _find(name, site, chain, doc)
        if path.resolve() in chain:
            raise doc.error("key 'include'", f"{name}: an include cycle ({path})", doc.line_of("include"))
        sub = expand(tomlfile.read(path, "suite"), site, chain)
        digest.update(sub.sha256.encode())
        included += [str(path), *getattr(sub, "included", ())]
        default_timeout = sub.data.get("default_timeout")
        for raw in sub.data.get("check", []):
            if isinstance(raw, dict):  # its own default timeout goes with it
                checks.append({**({"timeout": default_timeout} if default_timeout else {}), **raw})
    index_map: list[int | None] = [None] * len(checks)
    ids = {c.get("id"): k for k, c in enumerate(checks)}
    own = doc.data.get("check", [])
    if not isinstance(own, list):
        raise doc.error("key 'check'", "expected [[check]] tables", doc.line_of("check"))
    for j, raw in enumerate(own):
        if not isinstance(raw, dict):
            raise doc.error("key 'check'", f"expected [[check]] tables, got {raw!r}", doc.line_of("check"))
        k = ids.get(raw.get("id"))
        if k is None:
            checks.append(dict(raw))
            index_map.append(j)
            continue
        merged = {**checks[k], **raw}
        for key in MERGED:
            a, b = checks[k].get(key), raw.get(key)
            if isinstance(a, dict) and isinstance(b, dict):
                merged[key] = {**a, **b}
        checks[k] = merged
        index_map[k] = j
    data = {key: v for key, v in doc.data.items() if key != "include"}
    data["check"] = checks
    data.setdefault("name", Path(doc.path).stem)
    return MergedDoc(doc.path, doc.text, data, tuple(index_map), digest.hexdigest(), tuple(included))


def probe_names(doc: tomlfile.TomlDoc) -> set[str]:
    """The probes an expanded suite document names (to import only those)."""
    return {
        c["probe"]
        for c in doc.data.get("check", [])
        if isinstance(c, dict) and isinstance(c.get("probe"), str)
    }
