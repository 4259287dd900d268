"""``hpcbench baseline create --site-suite FILE``: a site's health suite from a golden node's record.

A health run's node_config check records what the node is (its settings' ``observed``: CPU
layout, memory, swap, real file systems mounted, the daemons running, BIOS version and product),
gpu_services the driver version, the inventory the GPUs. This writes the short suite that
includes the bundled ``health`` and expects all of that of every node like the golden one, so
nobody writes the TOML tables by hand. Read it before deploying: it expects what *that* node had.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpcbench.core.errors import ConfigError

#: a process name as /proc/PID/comm cuts it -> the daemon's name
FULL_NAMES = {"nvidia-persiste": "nvidia-persistenced", "nv-fabricmanage": "nv-fabricmanager"}
#: file systems whose source is the same on every node (a network file system's server and export)
SHARED_FS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "cephfs", "wekafs")


def _str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(values: list[str]) -> str:
    return "[" + ", ".join(_str(v) for v in values) + "]"


def _check(record: dict[str, Any], check_id: str) -> dict[str, Any] | None:
    return next((c for c in record["checks"] if c["id"] == check_id), None)


def _settings(check: dict[str, Any] | None) -> dict[str, Any]:
    for m in (check or {}).get("measurements", []):
        if m.get("settings"):
            return dict(m["settings"])
    return {}


def params_of(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """check id -> the parameters the site suite sets, from one health record."""
    observed = _settings(_check(record, "node_config")).get("observed")
    if not observed:
        raise ConfigError(
            f"record {record.get('run_id', '?')} of {record.get('host', '?')} has no node_config "
            "observations: give the record of a health run (hpcbench run health) of the golden node"
        )
    nc: dict[str, Any] = {
        k: observed[k] for k in ("cpu_sockets", "cpu_cores", "cpu_threads") if k in observed
    }
    if "memory_gib" in observed:
        nc["memory_gib"] = observed["memory_gib"]
        swap = float(observed.get("swap_gib", 0.0))
        nc["swap_min_gib"], nc["swap_max_gib"] = round(swap * 0.99, 3), round(swap * 1.01, 3)
    mounts = []
    for m in observed.get("mounts", []):
        spec = f"{m['path']} type={m['type']}"
        if m["type"] in SHARED_FS:
            spec += f" source={m['source']}"
        mounts.append(spec + (" rw" if m["rw"] else ""))
    if mounts:
        nc["mounts"] = mounts
    daemons = []
    for d in observed.get("daemons", []):
        name, _, user = d.partition("@")
        daemons.append(f"{FULL_NAMES.get(name, name)}@{user}" if user else FULL_NAMES.get(name, name))
    if daemons:
        nc["processes"] = daemons
    dmi = [f"{k}={v}" for k, v in observed.get("dmi", {}).items()]
    if dmi:
        nc["dmi"] = dmi
    out: dict[str, dict[str, Any]] = {"node_config": nc}
    gpus = (record.get("inventory", {}).get("gpus") or {}).get("devices") or []
    if gpus:
        out["gpu_health_node"] = {"expected_gpus": len(gpus)}
    driver = _settings(_check(record, "gpu_services")).get("driver_version")
    if driver:
        out["gpu_services"] = {"driver_version": driver}
    return out


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return _list([str(x) for x in v])
    return _str(str(v))


def render(record: dict[str, Any], name: str) -> str:
    lines = [
        f"# {name}: the bundled health suite, expecting what {record['host']} had on "
        f"{record['started'][:10]} (run {record['run_id']});",
        "# written by hpcbench baseline create --site-suite. Read it, then deploy it.",
        f"name = {_str(name)}",
        'include = "health"',
    ]
    for check_id, params in params_of(record).items():
        lines += ["", "[[check]]", f"id = {_str(check_id)}", "[check.params]"]
        lines += [f"{k} = {_value(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


def write(records: list[dict[str, Any]], output: Path, force: bool = False) -> Path:
    """The site suite from the latest of ``records`` that is a health run; checked to load."""
    from hpcbench.core.atomic import write_atomic
    from hpcbench.engine import suite

    if output.exists() and not force:
        raise ConfigError(f"{output} exists; pass --force to overwrite it")
    usable = [r for r in records if _check(r, "node_config") is not None]
    if not usable:
        raise ConfigError(
            "no record of a health run among them (no node_config check): run hpcbench run health"
        )
    latest = max(usable, key=lambda r: r["started"])
    text = render(latest, output.stem)

    def loads_back(tmp: Path) -> None:
        suite.load(str(tmp))

    return write_atomic(output, text, check=loads_back)
