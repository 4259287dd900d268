"""Probe discovery through the ``hpcbench.probes`` entry-point group, and the contract's check.

Built-in probes register there too (see pyproject.toml), so a third-party package is found
exactly like ours. Each class is checked against the probe contract when it registers, the
way pluggy checks a hook implementation against its spec: every required attribute present
with the right type, ``Params`` a frozen dataclass whose fields have defaults of types the
parameter parser knows, ``expands`` keys known and naming a parameter, ``requires`` kinds
known, ``run(params, ctx)`` callable with that signature. A probe that fails to import or to
meet the contract is *broken*: ``hpcbench list`` shows it with the reason and its package, a
suite that uses it is refused (exit 4), and the other probes keep working. Two packages that
register one name make that name broken, naming both. Run as root, a probe whose package or
metadata another user could change is broken too, and never imported (hpcbench.core.trust).

What the rest of hpcbench receives is a ``ProbeSpec``: the checked attributes, optional ones
filled with their defaults, so nothing downstream reads a probe class with ``getattr``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import inspect
import re
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcbench.core import trust
from hpcbench.core.entrypoints import Distribution, EntryPoint, find
from hpcbench.core.errors import ConfigError
from hpcbench.probes.base import EXPANSIONS, Requirement, param_hints

GROUP = "hpcbench.probes"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class ProbeSpec:
    """A registered probe whose class met the contract; what runner, suite and CLI use."""

    name: str
    cls: type
    description: str
    Params: type  # noqa: N815 - the contract's attribute name, so build_params takes a spec or a class
    requires: tuple[Requirement, ...]
    expands: Mapping[str, str]
    metrics: tuple[str, ...] | None
    concurrent: bool
    record_per_node: bool = False
    #: reads only, no load, seconds: the runner runs all such checks of a run in one child
    no_load: bool = False
    package: str = ""
    source: str = ""

    def instance(self) -> Any:
        return self.cls()


@dataclass(frozen=True)
class BrokenProbe:
    """A registered name that cannot be used, and why."""

    name: str
    reason: str
    package: str = ""
    source: str = ""

    def describe(self) -> str:
        """``reason (package hpcbench-x 1.0, my_pkg:Probe)``."""
        where = ", ".join(x for x in (f"package {self.package}" if self.package else "", self.source) if x)
        return f"{self.reason} ({where})" if where else self.reason


@dataclass(frozen=True)
class Catalog:
    """Every registered probe: the usable ones and the broken ones."""

    probes: dict[str, ProbeSpec] = field(default_factory=dict)
    broken: dict[str, BrokenProbe] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# The contract's check: pure, a list of problems (empty when the class conforms).


def param_type_problem(tp: Any, in_list: bool = False) -> str | None:
    """Why ``build_params`` cannot coerce a parameter of type ``tp``, or None: int, float, bool,
    str, unions of them with None, and lists of those (not of lists)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is not type(None) and (problem := param_type_problem(arg, in_list)):
                return problem
        return None
    if origin is list and not in_list:
        args = typing.get_args(tp)
        if len(args) != 1:
            return "list without an element type"
        return param_type_problem(args[0], in_list=True)
    if tp in _SCALARS:
        return None
    return getattr(tp, "__name__", None) or str(tp)


def _params_problems(params: Any) -> list[str]:
    if not (isinstance(params, type) and dataclasses.is_dataclass(params)):
        return [f"Params must be a dataclass, got {params!r}"]
    problems = []
    if not params.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        problems.append(f"Params {params.__name__} must be frozen (@dataclass(frozen=True))")
    try:
        hints = param_hints(params)
    except Exception as exc:  # a bad annotation: NameError, TypeError, ...
        return [*problems, f"Params {params.__name__} has annotations that do not resolve: {exc}"]
    for f in dataclasses.fields(params):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"parameter {f.name!r} has no default")
        if problem := param_type_problem(hints.get(f.name)):
            problems.append(
                f"parameter {f.name!r} has type {problem}; use int, float, bool, str, X | None or list[X]"
            )
    if not problems:
        try:
            params()
        except Exception as exc:  # __post_init__ refusing its own defaults
            problems.append(f"Params() with its defaults is refused: {exc}")
    return problems


def contract_problems(cls: Any, name: str) -> list[str]:
    """Everything about ``cls`` that breaks the probe contract (``hpcbench.probes.base.Probe``)
    when registered as ``name``; empty when it conforms."""
    if not isinstance(cls, type):
        return [f"the entry point loads {type(cls).__name__} {cls!r}, not a class"]
    problems: list[str] = []
    missing = [
        a for a in ("name", "description", "Params", "requires", "expands", "run") if not hasattr(cls, a)
    ]
    if missing:
        problems.append(f"missing required attribute{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    got = getattr(cls, "name", None)
    if "name" not in missing:
        if not isinstance(got, str) or not _NAME.match(got):
            problems.append(f"name must be a snake_case string, got {got!r}")
        elif got != name:
            problems.append(f"the entry point is named {name!r} but the class says name = {got!r}")
    desc = getattr(cls, "description", None)
    if "description" not in missing and (
        not isinstance(desc, str) or not desc.strip() or "\n" in desc.strip()
    ):
        problems.append(f"description must be one non-empty line, got {desc!r}")
    params = getattr(cls, "Params", None)
    fields: set[str] = set()
    if "Params" not in missing:
        found = _params_problems(params)
        problems += found
        if not found or dataclasses.is_dataclass(params):
            fields = (
                {f.name for f in dataclasses.fields(params)} if dataclasses.is_dataclass(params) else set()
            )
    requires = getattr(cls, "requires", ())
    if "requires" not in missing:
        if not isinstance(requires, (tuple, list)):
            problems.append(f"requires must be a tuple of Requirement, got {requires!r}")
        else:
            bad = [r for r in requires if not isinstance(r, Requirement)]
            if bad:
                problems.append(f"requires holds {bad[0]!r}, not a hpcbench.probes.base.Requirement")
    expands = getattr(cls, "expands", {})
    if "expands" not in missing:
        if not isinstance(expands, Mapping):
            problems.append(f"expands must be a dict of expansion kind -> parameter, got {expands!r}")
        else:
            for kind, param in expands.items():
                if kind not in EXPANSIONS:
                    problems.append(f"expands over unknown kind {kind!r}; known: {', '.join(EXPANSIONS)}")
                elif fields and param not in fields:
                    problems.append(f"expands[{kind!r}] names {param!r}, which is not a parameter")
    metrics = getattr(cls, "metrics", None)
    if metrics is not None and (
        not isinstance(metrics, (tuple, list)) or not all(isinstance(m, str) for m in metrics)
    ):
        problems.append(f"metrics must be a tuple of metric names, got {metrics!r}")
    for flag, default in (("concurrent", True), ("record_per_node", False), ("no_load", False)):
        value = getattr(cls, flag, default)
        if not isinstance(value, bool):
            problems.append(f"{flag} must be True or False, got {value!r}")
    run = getattr(cls, "run", None)
    if "run" not in missing:
        if not callable(run):
            problems.append("run must be a method run(self, params, ctx)")
        else:
            try:
                inspect.signature(run).bind(None, None, None)
            except TypeError:
                problems.append(f"run must take (self, params, ctx); it takes {inspect.signature(run)}")
            except ValueError:  # no signature (a builtin): cannot say
                pass
    try:
        inspect.signature(cls).bind()
    except TypeError:
        problems.append(
            f"the class must be callable without arguments; its signature is {inspect.signature(cls)}"
        )
    except ValueError:
        pass
    return problems


def spec_of(cls: Any, name: str | None = None, package: str = "", source: str = "") -> ProbeSpec:
    """The ProbeSpec of a probe class (a ProbeSpec is returned as it is); ConfigError listing the
    contract's problems when the class does not conform."""
    if isinstance(cls, ProbeSpec):
        return cls
    name = name if name is not None else str(getattr(cls, "name", ""))
    problems = contract_problems(cls, name)
    if problems:
        raise ConfigError(f"probe {name!r} breaks the probe contract: {'; '.join(problems)}")
    metrics = getattr(cls, "metrics", None)
    return ProbeSpec(
        name=name,
        cls=cls,
        description=cls.description.strip(),
        Params=cls.Params,
        requires=tuple(cls.requires),
        expands=types.MappingProxyType(dict(cls.expands)),
        metrics=metrics if metrics is None or isinstance(metrics, tuple) else tuple(metrics),
        concurrent=getattr(cls, "concurrent", True),
        record_per_node=getattr(cls, "record_per_node", False),
        no_load=getattr(cls, "no_load", False),
        package=package,
        source=source,
    )


# ---------------------------------------------------------------------------
# Discovery.


def _package(ep: EntryPoint) -> str:
    return _label(ep.dist) if ep.dist is not None else ""


@functools.cache
def _label(dist: Distribution) -> str:
    """``name version`` of a distribution: its METADATA read once, not once for each of its probes."""
    return dist.label()


def _entry_points() -> tuple[dict[str, EntryPoint], dict[str, BrokenProbe]]:
    found: dict[str, EntryPoint] = {}
    twice: dict[str, BrokenProbe] = {}
    for ep in find(GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            a, b = sorted((found[ep.name], ep), key=lambda e: e.value)
            twice[ep.name] = BrokenProbe(
                ep.name,
                f"two packages register it: {a.value} ({_package(a) or '?'}) and "
                f"{b.value} ({_package(b) or '?'}); uninstall one",
            )
        found.setdefault(ep.name, ep)
    return {n: ep for n, ep in found.items() if n not in twice}, twice


def _location_problem(ep: EntryPoint, memo: dict[tuple[str, str], str | None] | None = None) -> str | None:
    """As root: why the files behind an entry point (the metadata folder that names it, the
    top-level package its module lives in) are not under root's control (hpcbench.core.trust), else
    None. Found without importing anything: a refused plugin's code never runs. ``memo``: answers
    already found in this listing, by (metadata folder, top-level package)."""
    if not trust.strict():
        return None
    key = (ep.dist.path if ep.dist is not None else "", ep.module.split(".")[0])
    if memo is not None and key in memo:
        return memo[key]
    why = _places_problem(*key)
    if memo is not None:
        memo[key] = why
    return why


def _places_problem(meta: str, top: str) -> str | None:
    places = []
    if meta:  # the .dist-info of entry_points.txt
        places.append(Path(meta))
    try:
        spec = importlib.util.find_spec(top)  # finds; imports nothing
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        places.extend(Path(p) for p in spec.submodule_search_locations or ())
        if spec.origin and spec.has_location:
            places.append(Path(spec.origin))
    for place in places:
        why = trust.problem(place)
        if why:
            return f"refused as root, not loaded: {why}"
    return None


def _load(
    name: str, ep: EntryPoint, memo: dict[tuple[str, str], str | None] | None = None
) -> ProbeSpec | BrokenProbe:
    package, source = _package(ep), ep.value
    refused = _location_problem(ep, memo)
    if refused:
        return BrokenProbe(name, refused, package, source)
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin must not take the CLI down
        return BrokenProbe(name, f"failed to load: {type(exc).__name__}: {exc}", package, source)
    try:
        return spec_of(cls, name, package, source)
    except ConfigError:
        return BrokenProbe(name, "; ".join(contract_problems(cls, name)), package, source)


def names() -> list[str]:
    """Every registered name, broken ones included."""
    good, twice = _entry_points()
    return sorted({*good, *twice})


def catalog(only: Collection[str] | None = None) -> Catalog:
    """Every registered probe loaded and checked: the usable ones and the broken ones. ``only``:
    load just these (a run imports the probes of its suite); a name among them that is not
    registered loads them all, so that the error lists every known probe."""
    good, broken = _entry_points()
    probes: dict[str, ProbeSpec] = {}
    if only is not None and set(only) <= set(good) | set(broken):
        good = {n: ep for n, ep in good.items() if n in only}
    memo: dict[tuple[str, str], str | None] = {}
    for name in sorted(good):
        loaded = _load(name, good[name], memo)
        if isinstance(loaded, ProbeSpec):
            probes[name] = loaded
        else:
            broken[name] = loaded
    return Catalog(probes, dict(sorted(broken.items())))


def load(name: str) -> ProbeSpec:
    """The usable probe registered under ``name`` (only that one is imported); ConfigError when
    the name is unknown or the probe is broken."""
    good, twice = _entry_points()
    if name in twice:
        raise ConfigError(f"probe {name!r} is broken: {twice[name].describe()}")
    if name not in good:
        known = ", ".join(sorted({*good, *twice})) or "none installed"
        raise ConfigError(f"unknown probe {name!r}; known probes: {known}")
    loaded = _load(name, good[name])
    if isinstance(loaded, BrokenProbe):
        raise ConfigError(f"probe {name!r} is broken: {loaded.describe()}")
    return loaded


def load_all() -> dict[str, ProbeSpec]:
    """The usable probes (broken ones left out: see ``catalog``)."""
    return catalog().probes
