"""Synthetic fleets of result records, built by the real ``session.build_record``.

Every record is what ``hpcbench run`` writes: a real ``Suite`` of ``CheckSpec``s, runner
``Outcome``s holding ``Measurement.from_samples``, an optional ``Baseline``, and an inventory
in ``inventory.collect``'s shape (an 8-GPU H100 node by default). Nodes can be planted
slow (a factor on some checks' values, on the whole node or on one GPU) or drifted (another
driver, kernel, governor ...). Bad records (truncated JSON, another schema version, a record
of another suite, a JSON file that is no record) are written by ``write_bad``.

Used by tests/test_analysis_*.py and benchmarks/test_fleet_scale.py.
"""

from __future__ import annotations

import copy
import json
import random
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hpcbench.cli.run import build_record
from hpcbench.core.measurement import Measurement
from hpcbench.engine import store
from hpcbench.engine.baselines import Baseline, Expectation
from hpcbench.engine.plan import Job
from hpcbench.engine.runner import Outcome
from hpcbench.engine.suite import Band, CheckSpec, Relative, Suite
from hpcbench.node.inventory import Inventory

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)

# check id -> (probe, expand, {metric: (value, unit, higher_is_better)})
CHECKS: dict[str, tuple[str, str, dict[str, tuple[float, str, bool]]]] = {
    "gemm": ("gpu_gemm", "gpu", {"bf16": (700.0, "TFLOPS", True), "tf32": (380.0, "TFLOPS", True)}),
    "hbm": ("gpu_membw", "gpu", {"copy": (3000.0, "GB/s", True)}),
    "pcie": ("gpu_pcie", "gpu", {"h2d": (53.0, "GB/s", True), "d2h": (52.0, "GB/s", True)}),
    "attention": ("gpu_attention", "gpu", {"fwd": (450.0, "TFLOPS", True)}),
    "gpu_health": ("gpu_health", "gpu", {"max_temp": (62.0, "C", False)}),
    "nvlink": ("gpu_nvlink", "gpu", {"bw": (400.0, "GB/s", True)}),
    "membw": (
        "cpu_membw",
        "none",
        {
            "copy": (480.0, "GB/s", True),
            "scale": (470.0, "GB/s", True),
            "add": (520.0, "GB/s", True),
            "triad": (525.0, "GB/s", True),
        },
    ),
    "membw_numa": ("cpu_membw", "numa", {"triad": (262.0, "GB/s", True)}),
    "nvme": (
        "storage",
        "mount",
        {"randread_iops": (900000.0, "IOPS", True), "read_lat_p99": (180.0, "us", False)},
    ),
    "allreduce": ("nccl", "none", {"busbw": (360.0, "GB/s", True)}),
}


@dataclass(frozen=True)
class Node:
    """One synthetic node: its name, what is slow on it, and how its configuration drifts.

    ``slow`` maps a check id, ``check/subject`` or ``check/subject/metric`` to a factor on the
    measured performance (0.7 = 30 % slower; for lower-is-better metrics the value is divided).
    ``drift`` maps a dotted inventory path (``gpus.driver_version``, ``cpu.governor``) to a value.
    """

    host: str
    slow: dict[str, float] = field(default_factory=dict)
    drift: dict[str, Any] = field(default_factory=dict)
    gpus: int = 8

    def factor(self, check: str, subject: str, metric: str) -> float:
        f = 1.0
        for key in (check, f"{check}/{subject}", f"{check}/{subject}/{metric}"):
            f *= self.slow.get(key, 1.0)
        return f


def inventory(node: Node) -> dict[str, Any]:
    """An inventory in ``inventory.collect``'s shape, with the node's drift applied."""
    gpus = [
        {
            "index": i,
            "name": "NVIDIA H100 80GB HBM3",
            "pci_device_id": "0x233010DE",
            "pci_bus_id": f"00000000:{0x18 + 0x10 * i:02X}:00.0",
            "serial": f"16523{zlib.crc32(node.host.encode()) % 10**7:07d}{i}",
            "uuid": f"GPU-{zlib.crc32(f'{node.host}/{i}'.encode()):08x}-0000-0000-0000-000000000000",
            "memory_bytes": 85520809984,
            "error": None,
        }
        for i in range(node.gpus)
    ]
    inv: dict[str, Any] = {
        "hostname": node.host,
        "collected_at": T0.isoformat(timespec="seconds"),
        "cpu": {
            "model": "Intel(R) Xeon(R) Platinum 8480+",
            "vendor": "GenuineIntel",
            "sockets": 2,
            "cores": 112,
            "threads": 224,
            "llc_bytes": 220200960,
            "governor": "performance",
            "governors": ["performance"],
        },
        "numa": {
            "nodes": [
                {"id": 0, "cpus": list(range(0, 56)) + list(range(112, 168)), "memory_bytes": 1081101176832},
                {
                    "id": 1,
                    "cpus": list(range(56, 112)) + list(range(168, 224)),
                    "memory_bytes": 1082331766784,
                },
            ]
        },
        "memory": {
            "total_bytes": 2163432943616,
            "hugepages": {"total": 0, "free": 0, "size_bytes": 2097152},
            "thp": {"enabled": "always", "defrag": "madvise"},
        },
        "tunables": {"numa_balancing": 0},
        "os": {"kernel": "5.15.0-105-generic", "name": "Ubuntu 22.04.4 LTS"},
        "versions": {
            "hpcbench": "0.1.0",
            "python": "3.10.12",
            "torch": "2.3.0+cu121",
            "nvidia_ml_py": "12.550.52",
        },
        "gpus": {
            "count": node.gpus,
            "reason": None if node.gpus else "NVML reports no GPU",
            "driver_version": "550.54.15",
            "cuda_version": "12.4",
            "devices": gpus,
        },
        "storage": {
            "block_devices": [
                {
                    "name": "nvme0n1",
                    "model": "SAMSUNG MZQL27T6HBLA-00A07",
                    "size_bytes": 7681501126656,
                    "rotational": False,
                    "removable": False,
                }
            ],
            "mounts": [
                {"mountpoint": "/", "device": "/dev/sda2", "fstype": "ext4", "options": "rw,relatime"},
                {"mountpoint": "/mnt/nvme0", "device": "/dev/nvme0n1", "fstype": "xfs", "options": "rw"},
            ],
        },
    }
    for path, value in node.drift.items():
        if path == "cpu.governor":  # the governor lives in two places
            inv["cpu"]["governors"] = [value]
        target = inv
        *parents, leaf = path.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return inv


def suite(name: str = "nightly", checks: tuple[str, ...] | None = None) -> Suite:
    specs = []
    for cid in checks or tuple(CHECKS):
        probe, expand, _ = CHECKS[cid]
        rel = Relative("median", Band(0.9, 0.8)) if expand in ("gpu", "numa") else None
        specs.append(CheckSpec(id=cid, probe=probe, params={"repeats": 10}, expand=expand, relative=rel))
    return Suite(
        name=name,
        path=f"suites/{name}.toml",
        sha256="ab" * 32,
        checks=tuple(specs),
        description=f"synthetic {name}",
        require_baseline=False,
    )


def baseline(name: str = "h100-fleet", factor: float = 1.0) -> Baseline:
    """A baseline with every metric of CHECKS at ``factor`` x its nominal value."""
    expected = {
        cid: {
            m: Expectation(value=v * factor if hib else v / factor, unit=u) for m, (v, u, hib) in ms.items()
        }
        for cid, (_, _, ms) in CHECKS.items()
    }
    return Baseline(
        name=name,
        path=f"suites/baselines/{name}.toml",
        match={"gpu_name": "NVIDIA H100 80GB HBM3"},
        provenance={"source": "fleet-median", "date": "2026-10-01", "nodes": 64},
        expected=expected,
        matched_by="gpu_name",
    )


def subjects(node: Node, expand: str) -> list[str]:
    if expand == "gpu":
        return [f"gpu{i}" for i in range(node.gpus)]
    if expand == "numa":
        return ["numa0", "numa1"]
    if expand == "mount":
        return ["/mnt/nvme0"]
    return ["node"]


def record(
    node: Node,
    started: datetime,
    *,
    suite_obj: Suite | None = None,
    base: Baseline | None = None,
    seed: int = 0,
    noise: float = 0.01,
    samples: int = 10,
    errors: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One record of ``node``, as ``session.build_record`` writes it. ``errors``: check ids that crash."""
    rng = random.Random(f"{node.host}/{started.isoformat()}/{seed}")
    suite_obj = suite_obj or suite()
    inv = inventory(node)
    stamp = started.isoformat(timespec="seconds").replace("+00:00", "Z")
    outcomes = []
    for check in suite_obj.checks:
        _, expand, metrics = CHECKS[check.id]
        for subject in subjects(node, expand):
            job = Job(check, subject, dict(check.params))
            if check.id in errors:
                outcomes.append(
                    Outcome(
                        job, "error", started=stamp, duration=0.5, reason="probe crashed: killed by SIGSEGV"
                    )
                )
                continue
            ms = []
            for metric, (value, unit, hib) in metrics.items():
                f = node.factor(check.id, subject, metric)
                centre = value * f if hib else value / f
                vals = [centre * (1 + rng.gauss(0, noise)) for _ in range(samples)]
                ms.append(
                    Measurement.from_samples(
                        metric,
                        vals,
                        unit,
                        subject,
                        higher_is_better=hib,
                        statistic="median" if not hib else "best",
                        settings={"repeats": samples, "warmup": 2, "dtype": "bfloat16", "device": subject},
                    )
                )
            outcomes.append(
                Outcome(job, "ok", started=stamp, duration=2.0, params=dict(job.params), measurements=ms)
            )
    rec = build_record(
        suite_obj,
        base,
        Inventory.from_dict(inv),
        f"{zlib.crc32(f'{node.host}/{stamp}/{seed}'.encode()):08x}0000",
        stamp,
        outcomes,
        [],
        None,
    ).as_dict()
    rec["ended"] = (started + timedelta(minutes=5)).isoformat(timespec="seconds").replace("+00:00", "Z")
    return rec


def write(rec: dict[str, Any], root: Path) -> Path:
    """Save a record where ``hpcbench run --output root`` would."""
    return store.save_atomic(rec, store.record_path(root, rec["host"], rec["started"]))


def fleet(
    root: Path,
    n: int,
    *,
    slow: dict[str, dict[str, float]] | None = None,
    drift: dict[str, dict[str, Any]] | None = None,
    nights: int = 1,
    suite_obj: Suite | None = None,
    base: Baseline | None = None,
    prefix: str = "node",
    start: datetime = T0,
    slow_from_night: int = 0,
) -> list[Node]:
    """Write ``nights`` records per node for ``n`` nodes; ``slow`` and ``drift`` by host name.

    Planted slowness applies from night ``slow_from_night`` on (earlier nights are healthy).
    """
    nodes = [
        Node(
            f"{prefix}{i:03d}",
            slow=(slow or {}).get(f"{prefix}{i:03d}", {}),
            drift=(drift or {}).get(f"{prefix}{i:03d}", {}),
        )
        for i in range(n)
    ]
    for night in range(nights):
        for node in nodes:
            effective = (
                node if night >= slow_from_night else Node(node.host, drift=node.drift, gpus=node.gpus)
            )
            write(record(effective, start + timedelta(days=night), suite_obj=suite_obj, base=base), root)
    return nodes


def write_bad(
    root: Path, template: dict[str, Any], hosts: tuple[str, str] = ("node001", "node002")
) -> dict[str, Path]:
    """The bad records, each where an analysis must read it and fall back or skip.

    truncated: the newest record of ``hosts[0]`` cut in half; schema: the newest record of
    ``hosts[1]`` with schema_version 99; not_record: JSON that is no record, in a folder of its own.
    """
    later = datetime.fromisoformat(template["started"].replace("Z", "+00:00")) + timedelta(days=30)
    stamp = later.isoformat(timespec="seconds").replace("+00:00", "Z")
    paths = {}
    for kind, host in (("truncated", hosts[0]), ("schema", hosts[1])):
        rec = copy.deepcopy(template)
        rec.update(host=host, started=stamp, ended=stamp)
        rec["inventory"]["hostname"] = host
        if kind == "schema":
            rec["schema_version"] = 99
        text = json.dumps(rec, indent=1)
        path = store.record_path(root, host, stamp)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text[: len(text) // 2] if kind == "truncated" else text)
        paths[kind] = path
    junk = root / "junk" / "notes.json"
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_text(json.dumps({"hello": "world"}))
    paths["not_record"] = junk
    return paths
