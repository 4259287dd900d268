"""NVMe SMART / health log through nvme-cli: ``nvme smart-log -o json /dev/nvmeN``.

The controllers come from ``/sys/class/nvme/nvme<N>/`` (model, serial, PCI address,
transport); only local (``pcie``) controllers are read: fabrics controllers (tcp, rdma, fc)
are someone else's drives. nvme-cli runs with an argv list and a timeout, through a runner
the tests replace (or from a folder of captured outputs, ``nvme_smart_logs``).

``parse_smart_log`` is pure and reads the JSON of every nvme-cli version we know
(tests/probes/node_health/fixtures/node_health/nvme/): numbers (1.x, 2.0, 2.2+), numbers printed as strings
(2.1: ``"media_errors":"0.000000"``), ``critical_warning`` as a number or, with ``-H``, an
object ``{"value": 4, "available_spare": 0, ...}``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hpcbench.core.items import Item, failed, missing
from hpcbench.node.pci import read_text
from hpcbench.probes.node_health import metrics as names

NVME_CLASS = "sys/class/nvme"
METRICS = names.NVME
INSTALL = (
    "install nvme-cli (Debian/Ubuntu: apt-get install nvme-cli; RHEL/Rocky/Fedora: dnf install nvme-cli)"
)
#: critical warning bits (NVMe base specification, SMART / Health Information log, byte 0)
WARNING_BITS = (
    (0x01, "available spare below threshold"),
    (0x02, "temperature outside its thresholds"),
    (0x04, "reliability degraded (media or internal errors)"),
    (0x08, "media placed in read-only mode"),
    (0x10, "volatile memory backup failed"),
    (0x20, "persistent memory region read-only"),
)

#: (argv, timeout seconds) -> (exit status, stdout, stderr); raises TimeoutError or OSError
Runner = Callable[[list[str], float], tuple[int, str, str]]


def run_command(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """The real runner: the command with an argv list and a timeout, no shell."""
    import subprocess

    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{' '.join(argv)} timed out after {timeout:g} s") from None
    return done.returncode, done.stdout, done.stderr


def replay_from(folder: str) -> Runner:
    """A runner that answers ``smart-log ... /dev/nvmeN`` with ``<folder>/nvmeN.json`` (captured output)."""

    def run(argv: list[str], timeout: float) -> tuple[int, str, str]:
        path = os.path.join(folder, f"{os.path.basename(argv[-1])}.json")
        try:
            with open(path, encoding="utf-8") as fh:
                return 0, fh.read(), ""
        except OSError as exc:
            return 1, "", f"{path}: {exc.strerror or exc}"

    return run


@dataclass(frozen=True)
class Controller:
    name: str  # nvme0
    model: str
    serial: str
    address: str  # PCI address (pcie) or the fabric's address
    transport: str  # pcie, tcp, rdma, fc, loop

    def describe(self) -> str:
        bits = ", ".join(b for b in (self.model, self.address) if b)
        return f"{self.name} ({bits})" if bits else self.name


@dataclass(frozen=True)
class Smart:
    """What the probe reads from one controller's SMART / health log."""

    critical_warning: int
    avail_spare: int  # percent
    spare_thresh: int  # percent; above 100 is reserved (some firmware reports 255)
    percent_used: int  # percent of the rated endurance (may exceed 100)
    media_errors: int  # unrecovered data integrity errors over the drive's life
    temperature_k: int

    @property
    def spare_low(self) -> bool:
        return 0 < self.spare_thresh <= 100 and self.avail_spare < self.spare_thresh

    def warnings(self) -> list[str]:
        return [what for bit, what in WARNING_BITS if self.critical_warning & bit]

    def warning_text(self) -> str:
        return ", ".join(self.warnings()) or "reserved bits"


def controllers(root: str) -> list[Controller] | None:
    """The NVMe controllers under ``root`` (``/sys/class/nvme``); None when there is none."""
    base = os.path.join(root, NVME_CLASS)
    try:
        names = sorted(n for n in os.listdir(base) if n.startswith("nvme"))
    except OSError:
        return None

    def text(name: str, leaf: str) -> str:
        return (read_text(f"{base}/{name}/{leaf}") or "").strip()

    found = [
        Controller(n, text(n, "model"), text(n, "serial"), text(n, "address"), text(n, "transport") or "pcie")
        for n in names
    ]
    return found or None


def _number(value: Any, key: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):  # nvme-cli 2.1 printed 128-bit counters as "%Lf" strings
        try:
            return int(float(value))
        except ValueError:
            pass
    raise ValueError(f"{key}: expected a number, got {value!r}")


def parse_smart_log(text: str) -> Smart:
    """The fields the probe judges from ``nvme smart-log -o json`` (any nvme-cli version);
    ValueError with a one-line reason when the text is not such a log."""
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    missing_keys = [
        k
        for k in ("critical_warning", "avail_spare", "spare_thresh", "percent_used", "media_errors")
        if k not in data
    ]
    if missing_keys:
        raise ValueError(f"no {', '.join(missing_keys)} in the output: not a SMART log")
    warning = data["critical_warning"]
    if isinstance(warning, dict):  # -H (human readable): the bits decoded beside "value"
        warning = warning.get("value")
    return Smart(
        critical_warning=_number(warning, "critical_warning"),
        avail_spare=_number(data["avail_spare"], "avail_spare"),
        spare_thresh=_number(data["spare_thresh"], "spare_thresh"),
        percent_used=_number(data["percent_used"], "percent_used"),
        media_errors=_number(data["media_errors"], "media_errors"),
        temperature_k=_number(data.get("temperature", 0), "temperature"),
    )


def smart_argv(nvme: str, controller: str) -> list[str]:
    return [nvme, "smart-log", "-o", "json", f"/dev/{controller}"]


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def read_smart(
    ctrls: list[Controller], nvme: str, runner: Runner, timeout: float
) -> tuple[dict[str, Smart], dict[str, str], dict[str, str]]:
    """(SMART logs read, controllers we may not read -> why, controllers that failed -> why)."""
    logs: dict[str, Smart] = {}
    denied: dict[str, str] = {}
    errors: dict[str, str] = {}
    for c in ctrls:
        argv = smart_argv(nvme, c.name)
        try:
            status, out, err = runner(argv, timeout)
        except (TimeoutError, OSError) as exc:
            errors[c.name] = str(exc)
            continue
        if status != 0:
            why = _first_line(err) or _first_line(out) or f"exit status {status}"
            if "ermission denied" in why or "not permitted" in why:
                denied[c.name] = why
            else:
                errors[c.name] = f"{' '.join(argv)}: {why}"
            continue
        try:
            logs[c.name] = parse_smart_log(out)
        except ValueError as exc:
            errors[c.name] = f"{' '.join(argv)}: {exc}"
    return logs, denied, errors


def items(
    root: str,
    nvme: str,
    runner: Runner | None,
    timeout: float,
    settings: dict[str, Any],
) -> list[Item]:
    """The NVMe items of the node under ``root``. ``runner`` None: nvme-cli itself, which must be
    on PATH (missing while NVMe drives exist: ERROR with the package to install)."""
    import shutil

    found = controllers(root)
    if found is None:
        return missing(METRICS, f"no NVMe controller ({os.path.join(root, NVME_CLASS)} is absent or empty)")
    local = [c for c in found if c.transport == "pcie"]
    settings["nvme_controllers"] = [c.__dict__ for c in found]
    if not local:
        remote = ", ".join(f"{c.name} ({c.transport})" for c in found)
        return missing(METRICS, f"no local NVMe drive: only fabrics controllers {remote}")
    if runner is None:
        if shutil.which(nvme) is None:
            why = f"{len(local)} NVMe drive(s) but {nvme!r} (nvme-cli) is not on PATH: {INSTALL}"
            return failed(METRICS, why)
        if os.path.realpath(root) != "/":
            return missing(METRICS, f"root is {root}, not this node: give nvme_smart_logs (captured logs)")
        runner = run_command
    logs, denied, errors = read_smart(local, nvme, runner, timeout)
    settings["nvme_smart"] = {name: s.__dict__ for name, s in logs.items()}
    by_name = {c.name: c for c in local}
    if denied and not logs and not errors:
        first = next(iter(denied.values()))
        return missing(METRICS, f"no permission to read the SMART logs (run as root): {first}")
    errors.update({name: f"no permission: {why}" for name, why in denied.items()})
    err_detail = "; ".join(f"{by_name[n].describe()}: {why}" for n, why in errors.items())
    unreadable = Item(
        "nvme_smart_errors",
        float(len(errors)),
        detail=(f"{len(errors)} of {len(local)} drive(s) did not give their SMART log: {err_detail}")
        if errors
        else f"the SMART logs of {len(local)} drive(s) read",
    )
    if not logs:
        return [
            *missing(METRICS[:-1], "no drive's SMART log could be read (see nvme_smart_errors)"),
            unreadable,
        ]

    def name(n: str) -> str:
        return by_name[n].describe()

    warn = {n: s for n, s in logs.items() if s.critical_warning}
    media = {n: s.media_errors for n, s in logs.items() if s.media_errors}
    spare = {n: s for n, s in logs.items() if s.spare_low}
    worn_name, worn = max(((n, s.percent_used) for n, s in logs.items()), key=lambda kv: kv[1])
    scope = f"of {len(logs)} drive(s)"
    return [
        Item(
            "nvme_critical_warnings",
            float(len(warn)),
            detail="; ".join(
                f"{name(n)}: critical warning 0x{s.critical_warning:02x} ({s.warning_text()})"
                for n, s in warn.items()
            )
            or f"no critical warning on any {scope}",
        ),
        Item(
            "nvme_media_errors",
            float(sum(media.values())),
            detail="; ".join(f"{name(n)}: {v} media and data integrity errors" for n, v in media.items())
            or f"no media error on any {scope}",
        ),
        Item(
            "nvme_spare_below_threshold",
            float(len(spare)),
            detail="; ".join(
                f"{name(n)}: available spare {s.avail_spare}% below its threshold {s.spare_thresh}%"
                for n, s in spare.items()
            )
            or f"available spare at or above its threshold on each {scope}",
        ),
        Item(
            "nvme_percent_used",
            float(worn),
            unit="%",
            detail=f"most worn: {name(worn_name)} at {worn}% of its rated endurance",
        ),
        unreadable,
    ]
