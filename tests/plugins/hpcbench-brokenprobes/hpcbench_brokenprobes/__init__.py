"""Probe classes that each break one rule of hpcbench's probe contract."""

from __future__ import annotations

from dataclasses import dataclass

from hpcbench.core.measurement import Measurement
from hpcbench.probes.base import ProbeContext, Requirement


@dataclass(frozen=True)
class Good:
    n: int = 1


def _measure(ctx: ProbeContext) -> list[Measurement]:
    return [Measurement.from_samples("score", [1.0], "GB/s", ctx.subject)]


class NoExpands:
    """No ``expands``: once passed suite validation, then failed in ``hpcbench list``."""

    name = "no_expands"
    description = "Has no expands attribute"
    Params = Good
    requires: tuple[Requirement, ...] = ()

    def run(self, params: Good, ctx: ProbeContext) -> list[Measurement]:
        return _measure(ctx)


@dataclass
class NotFrozen:
    n: int = 1


class Thawed:
    name = "thawed"
    description = "Params is not frozen"
    Params = NotFrozen
    requires: tuple[Requirement, ...] = ()
    expands: dict[str, str] = {}

    def run(self, params: NotFrozen, ctx: ProbeContext) -> list[Measurement]:
        return _measure(ctx)


@dataclass(frozen=True)
class Required:
    n: int


class NoDefault:
    name = "no_default"
    description = "A parameter without a default"
    Params = Required
    requires: tuple[Requirement, ...] = ()
    expands: dict[str, str] = {}

    def run(self, params: Required, ctx: ProbeContext) -> list[Measurement]:
        return _measure(ctx)


@dataclass(frozen=True)
class Mapped:
    table: dict = None  # type: ignore[assignment]


class OddType:
    name = "odd_type"
    description = "A parameter of a type the parameter parser cannot fill"
    Params = Mapped
    requires: tuple[Requirement, ...] = ()
    expands: dict[str, str] = {}

    def run(self, params: Mapped, ctx: ProbeContext) -> list[Measurement]:
        return _measure(ctx)


class FarExpand:
    name = "far_expand"
    description = "Expands over a kind the runner does not know"
    Params = Good
    requires: tuple[Requirement, ...] = ()
    expands = {"rack": "n"}

    def run(self, params: Good, ctx: ProbeContext) -> list[Measurement]:
        return _measure(ctx)


class BadRun:
    name = "bad_run"
    description = "run takes the wrong arguments"
    Params = Good
    requires: tuple[Requirement, ...] = ()
    expands: dict[str, str] = {}

    def run(self, params: Good) -> list[Measurement]:
        return []


class Misnamed:
    name = "other_name"
    description = "Its name differs from its entry point's"
    Params = Good
    requires: tuple[Requirement, ...] = ()
    expands: dict[str, str] = {}

    def run(self, params: Good, ctx: ProbeContext) -> list[Measurement]:
        return _measure(ctx)


class Twin:
    name = "twin"
    description = "Registered by two packages"
    Params = Good
    requires: tuple[Requirement, ...] = ()
    expands: dict[str, str] = {}

    def run(self, params: Good, ctx: ProbeContext) -> list[Measurement]:
        return _measure(ctx)
