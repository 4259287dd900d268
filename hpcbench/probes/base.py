"""The probe contract: a name, a description, typed parameters, requirements, run().

A probe measures one subsystem and returns measurements. It prints nothing,
decides no verdict and writes nothing but its own subject (inside
``ctx.workdir``, which the runner removes afterwards).
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from hpcbench.core.errors import ParamError

if TYPE_CHECKING:  # `hpcbench list` reads probe headers: it needs neither a record nor an inventory
    from hpcbench.core.measurement import Measurement, Unmeasured
    from hpcbench.node.inventory import Inventory


def _empty_inventory() -> Inventory:
    from hpcbench.node.inventory import Inventory

    return Inventory()


@dataclass(frozen=True)
class ProbeContext:
    """What the runner hands a probe: its subject, the node's inventory, a scratch folder."""

    subject: str = "node"
    inventory: Inventory = field(default_factory=_empty_inventory)
    workdir: str = ""
    timeout: float | None = None
    #: the GPUs (NVML indices) this run may use (--gpus, CUDA_VISIBLE_DEVICES); None: all of the node's
    gpus: tuple[int, ...] | None = None


#: in ``ctx.workdir``: folders a probe created outside it, one per line; the runner removes
#: them when the child has ended, however it ended (even killed with SIGKILL)
CLEANUP_LIST = "cleanup.list"


def register_cleanup(ctx: ProbeContext, path: Any) -> None:
    """Ask the runner to remove ``path`` (a folder the probe created) should the probe not."""
    if ctx.workdir:
        with open(f"{ctx.workdir}/{CLEANUP_LIST}", "a", encoding="utf-8") as fh:
            fh.write(f"{path}\n")
            fh.flush()


#: what a probe may expand over (``expands`` keys; a suite's ``expand``, besides ``none``):
#: one subject per NUMA node, GPU, mount, or NIC port (RDMA port or physical Ethernet interface)
EXPANSIONS: tuple[str, ...] = ("numa", "gpu", "mount", "nic", "rail")
#: the kinds of ``Requirement``
REQUIREMENT_KINDS: tuple[str, ...] = ("gpu", "binary", "ranks", "idle_gpu")


#: in ``ctx.workdir``: a long probe's progress lines (a burn's windows), one per line; the runner
#: tails the file while the child runs and hands each line to its progress callback
PROGRESS_FILE = "progress.log"


def report_progress(ctx: ProbeContext, text: str) -> None:
    """One line of progress of a long-running probe, for the operator watching a terminal (the
    runner shows it on stderr, rewritten in place on a TTY, not at all with --quiet). A probe
    still prints nothing; outside a runner (no workdir) the line goes nowhere."""
    if ctx.workdir:
        with open(f"{ctx.workdir}/{PROGRESS_FILE}", "a", encoding="utf-8") as fh:
            fh.write(" ".join(str(text).split()) + "\n")
            fh.flush()


@dataclass(frozen=True)
class Requirement:
    """Something a probe needs. Unmet, it becomes SKIP (not applicable) or ERROR (missing tool).

    kind: ``gpu`` (a CUDA device; unmet is SKIP), ``binary`` (a program on PATH;
    unmet is ERROR with ``install`` as the hint), ``ranks`` (at least ``count``
    processes; informational for the runner), ``idle_gpu`` (no other process may hold
    the job's GPUs; evaluated by the runner with NVML per job, see ``hpcbench.engine.busy``:
    unmet is SKIP "busy: ...", unless ``--force``).
    """

    kind: str
    name: str = ""
    install: str = ""
    count: int = 1

    def __post_init__(self) -> None:
        if self.kind not in REQUIREMENT_KINDS:
            known = ", ".join(REQUIREMENT_KINDS)
            raise ValueError(f"unknown requirement kind {self.kind!r}; known: {known}")
        if self.kind == "binary" and not self.name:
            raise ValueError(
                "a binary requirement names its program: Requirement('binary', 'fio', install=...)"
            )

    def unmet(self, inventory: Inventory) -> tuple[str, str, str] | None:
        """None when met, else (verdict name, reason, hint)."""
        if self.kind == "gpu":
            inventory = inventory
            if not inventory.gpus.count:
                from hpcbench.node.collector import gpu_absence

                status, reason, hint = gpu_absence(inventory)
                return (status.upper(), reason, hint)
            return None
        if self.kind == "binary":
            if shutil.which(self.name) is None:
                return ("ERROR", f"{self.name} not found on PATH", self.install)
            return None
        return None


class GpuProbe:
    """The class header the GPU compute probes share (gemm, attention, burn, memtest, gpu_membw):
    they need their GPU to themselves (``idle_gpu``; all but gpu_membw also run on the CPU device,
    so they do not require a GPU), and a suite's ``expand = "gpu"`` passes each GPU's
    index as their ``device`` parameter. A probe sets ``name``, ``description``, ``Params`` and
    ``metrics`` itself; the device opening they share is ``hpcbench.hw.gpu_probe``."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type]
    metrics: ClassVar[tuple[str, ...]]
    requires: ClassVar[tuple[Requirement, ...]] = (Requirement("idle_gpu"),)
    expands: ClassVar[dict[str, str]] = {"gpu": "device"}

    def __init__(self, clock: Any = None) -> None:
        #: None: the device's own clock (a ``hpcbench.hw.torch_device.Clock``); tests pass fixed timings
        self.clock = clock


class MetricNames(tuple):  # type: ignore[type-arg]
    """A probe's ``metrics``: the names listed (shown in suite errors, with a ``<pattern>`` entry),
    and membership by a regular expression, for names built from parameters (shapes, lengths)."""

    pattern: Any = None

    def __new__(cls, names: tuple[str, ...], pattern: str) -> MetricNames:
        import re

        obj = super().__new__(cls, names)
        obj.pattern = re.compile(pattern)
        return obj

    def __contains__(self, name: object) -> bool:
        return tuple.__contains__(self, name) or (
            isinstance(name, str) and bool(self.pattern.fullmatch(name))
        )


@runtime_checkable
class Probe(Protocol):
    """The protocol every probe class follows (built-in and third-party alike).

    ``hpcbench.probes.registry`` checks it when a probe registers (``contract_problems``), so
    nothing else needs to: required are ``name`` (snake_case, the entry point's name),
    ``description`` (one line), ``Params`` (a frozen dataclass whose fields all have defaults of
    the types ``build_params`` coerces), ``requires`` (Requirements of known kinds), ``expands``
    (keys from EXPANSIONS, each naming a Params field) and ``run(params, ctx)``; optional are
    ``metrics`` (the metric names it can report, default: not declared), ``concurrent``
    (default True: the subjects of a ``gpu`` expansion run at once) and ``record_per_node``
    (default False: under a launch, rank 0 alone writes the record) and ``no_load`` (default
    False; True: it only reads, puts no load on the node and ends in seconds, so the runner runs
    it with the run's other such checks in one child under a watchdog: ``hpcbench.engine.batch``).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type]
    requires: ClassVar[tuple[Requirement, ...]]
    #: expansion kind (``numa``, ``gpu``, ``mount``, ``nic``, ``rail``) -> parameter that receives the subject
    expands: ClassVar[dict[str, str]]
    #: optional: the metrics it can report (a suite naming another is refused)
    metrics: ClassVar[tuple[str, ...] | None]
    #: optional: False runs the subjects of a ``gpu`` expansion one after another
    concurrent: ClassVar[bool]
    #: optional: True lets the first rank of every node of a torchrun/srun launch write its own record
    record_per_node: ClassVar[bool]
    #: optional: True for a probe that only reads (no load, seconds): run in the one shared child
    no_load: ClassVar[bool]

    def run(self, params: Any, ctx: ProbeContext) -> list[Measurement | Unmeasured]: ...


# ---------------------------------------------------------------------------
# Parameters: a dataclass per probe; these helpers describe, coerce and build.


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    default: Any
    help: str


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp)
        return f"list[{_type_name(arg)}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


@functools.cache
def param_hints(params_cls: type) -> dict[str, Any]:
    """The evaluated type hints of a Params class, once per class (``typing.get_type_hints``
    compiles every annotation of a ``from __future__ import annotations`` module each call)."""
    return typing.get_type_hints(params_cls)


def param_specs(params_cls: type) -> list[ParamSpec]:
    """Name, type, default and help of every parameter of a probe."""
    hints = param_hints(params_cls)
    specs = []
    for f in dataclasses.fields(params_cls):
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        specs.append(ParamSpec(f.name, _type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return specs


def _coerce(probe: str, key: str, tp: Any, value: Any, from_text: bool) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and (value is None or (from_text and value in ("", "none", "None"))):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(probe, key, arg, value, from_text)
            except ParamError:
                continue
        raise ParamError(probe, key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (arg,) = typing.get_args(tp)
        if from_text and isinstance(value, str):
            value = [v for v in (p.strip() for p in value.split(",")) if v]
        if not isinstance(value, list):
            raise ParamError(probe, key, f"expected a list of {_type_name(arg)}, got {value!r}")
        return [_coerce(probe, key, arg, v, from_text) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if (
            from_text
            and isinstance(value, str)
            and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off")
        ):
            return value.lower() in ("true", "yes", "1", "on")
        raise ParamError(probe, key, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ParamError(probe, key, f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if from_text and isinstance(value, str):
            for base in (10, 0):  # decimal first ("08"), then 0x.. / 0o.. / 0b..
                try:
                    return int(value, base)
                except ValueError:
                    pass
        raise ParamError(probe, key, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ParamError(probe, key, f"expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if from_text and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ParamError(probe, key, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ParamError(probe, key, f"expected a string, got {value!r}")
    raise ParamError(probe, key, f"unsupported parameter type {_type_name(tp)}")


def build_params(probe_cls: type, values: dict[str, Any], *, from_text: bool = False) -> Any:
    """The probe's Params from a mapping (TOML values, or ``-p key=value`` text).

    Unknown keys and values of the wrong type raise ParamError; the dataclass's
    ``__post_init__`` validates ranges and raises ParamError itself.
    """
    params_cls = probe_cls.Params
    hints = param_hints(params_cls)
    known = {f.name for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParamError(
            probe_cls.name, unknown[0], f"unknown parameter; known: {', '.join(sorted(known)) or 'none'}"
        )
    kwargs = {k: _coerce(probe_cls.name, k, hints[k], v, from_text) for k, v in values.items()}
    try:
        return params_cls(**kwargs)
    except ParamError:
        raise
    except (TypeError, ValueError) as exc:
        raise ParamError(probe_cls.name, "?", str(exc)) from None


def params_as_dict(params: Any) -> dict[str, Any]:
    return dataclasses.asdict(params)


def check(condition: bool, probe: str, key: str, message: str) -> None:
    """Validation helper for Params.__post_init__."""
    if not condition:
        raise ParamError(probe, key, message)
