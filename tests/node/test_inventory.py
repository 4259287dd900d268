"""Inventory: parsers on captured files, collect() on fake roots, GPUs through a fake NVML."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pynvml
import pytest
from support.fakenvml import FakeNvml

from hpcbench.node import collector as inv
from hpcbench.node import nvml as nvml_seam
from hpcbench.node.inventory import Inventory

FIXTURES = Path(__file__).parent / "fixtures" / "inventory"
VM = FIXTURES / "vm_epyc_2cpu.txt"  # captured from a real 2-vCPU KVM guest
XEON = FIXTURES / "xeon_2s_2numa.txt"  # realistic 2-socket, 2-NUMA node (written, not captured)

TOP_KEYS = {
    "hostname", "collected_at", "cpu", "numa", "memory", "tunables", "os", "versions", "gpus", "storage",
    "network",
}  # fmt: skip


def dump_files(dump: Path) -> dict[str, str]:
    """A 'path:line' dump (grep -H '' output) as {relative path: file text}."""
    files: dict[str, list[str]] = defaultdict(list)
    for line in dump.read_text().splitlines():
        if line.startswith("#"):
            continue
        path, _, content = line.partition(":")
        files[path].append(content)
    return {path: "\n".join(lines) + "\n" for path, lines in files.items()}


def make_root(dump: Path, root: Path) -> Path:
    for rel, text in dump_files(dump).items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return root


# ---------------------------------------------------------------------------
# Parsers


def test_parse_cpulist_and_format_round_trip() -> None:
    assert inv.parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert inv.parse_cpulist("") == [] and inv.parse_cpulist(None) == []
    assert inv.format_cpulist([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"
    assert inv.format_cpulist(inv.parse_cpulist("0-7,16-23")) == "0-7,16-23"


def test_parse_size() -> None:
    assert inv.parse_size("32768K") == 32 * 1024**2
    assert inv.parse_size("1M\n") == 1024**2
    assert inv.parse_size("512") == 512
    assert inv.parse_size("") is None and inv.parse_size(None) is None and inv.parse_size("big") is None


def test_parse_meminfo_on_captured_files() -> None:
    files = dump_files(VM)
    mem = inv.parse_meminfo(files["proc/meminfo"])
    assert mem["MemTotal"] == 24684096 * 1024
    assert mem["HugePages_Total"] == 0 and mem["Hugepagesize"] == 2048 * 1024
    node = inv.parse_meminfo(files["sys/devices/system/node/node0/meminfo"])
    assert node["MemTotal"] == 6121688 * 1024  # "Node 0 " prefix dropped


def test_parse_cpuinfo_x86() -> None:
    vm = inv.parse_cpuinfo(dump_files(VM)["proc/cpuinfo"])
    assert vm == {"model": "AMD EPYC", "vendor": "AuthenticAMD", "processors": 2, "sockets": 1, "cores": 2}
    xeon = inv.parse_cpuinfo(dump_files(XEON)["proc/cpuinfo"])
    assert xeon["model"] == "Intel(R) Xeon(R) Gold 6434" and xeon["vendor"] == "GenuineIntel"
    assert (xeon["processors"], xeon["sockets"], xeon["cores"]) == (32, 2, 16)


def test_parse_cpuinfo_arm_grace_has_no_model_name() -> None:
    block = (
        "processor\t: {n}\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd4f\n"
        "CPU revision\t: 0\n"
    )
    info = inv.parse_cpuinfo("\n".join(block.format(n=n) for n in range(4)))
    assert info["model"] == "Neoverse-V2" and info["vendor"] == "ARM" and info["processors"] == 4
    assert info["sockets"] is None and info["cores"] is None  # no physical/core id on Arm
    unknown = inv.parse_cpuinfo(block.format(n=0).replace("0xd4f", "0x123"))
    assert unknown["model"] == "part 0x123" and unknown["vendor"] == "implementer 0x41"
    assert inv.parse_cpuinfo("") == {
        "model": "unknown", "vendor": "unknown", "processors": 0, "sockets": None, "cores": None,
    }  # fmt: skip


def test_parse_bracketed_and_os_release() -> None:
    files = dump_files(XEON)
    assert inv.parse_bracketed(files["sys/kernel/mm/transparent_hugepage/enabled"]) == "always"
    assert inv.parse_bracketed(files["sys/kernel/mm/transparent_hugepage/defrag"]) == "madvise"
    assert inv.parse_bracketed(None) is None and inv.parse_bracketed("") is None
    assert inv.parse_os_release(dump_files(VM)["etc/os-release"])["PRETTY_NAME"] == (
        "Debian GNU/Linux 12 (bookworm)"
    )


def test_parse_mounts_skips_pseudo_and_system_tmpfs() -> None:
    mounts = inv.parse_mounts(dump_files(XEON)["proc/self/mounts"])
    assert [m["mountpoint"] for m in mounts] == [
        "/", "/boot", "/boot/efi", "/local", "/tmp", "/home", "/lustre",
        "/var/lib/containers/storage/overlay/3f1c/merged",
    ]  # fmt: skip
    by_path = {m["mountpoint"]: m for m in mounts}
    assert by_path["/local"] == {
        "mountpoint": "/local", "device": "/dev/md0", "fstype": "xfs",
        "options": "rw,noatime,attr2,inode64,logbufs=8,logbsize=256k,sunit=1024,swidth=2048,noquota",
    }  # fmt: skip
    assert by_path["/tmp"]["fstype"] == "tmpfs"  # kept: the storage probe warns about it
    assert by_path["/var/lib/containers/storage/overlay/3f1c/merged"]["fstype"] == "overlay"
    # the captured VM: /dev/shm (twice) and /sys/fs/cgroup tmpfs, cgroups, devpts... all dropped
    assert [m["mountpoint"] for m in inv.parse_mounts(dump_files(VM)["proc/self/mounts"])] == ["/"]


def test_parse_mounts_unescapes_and_last_mount_wins() -> None:
    text = (
        "/dev/sdb1 /mnt/scratch\\040space ext4 rw 0 0\n"
        "/dev/sdc1 /data ext4 rw 0 0\n"
        "/dev/sdd1 /data xfs rw,noatime 0 0\n"
        "tmpfs /run tmpfs rw 0 0\n"
        "tmpfs /runner tmpfs rw 0 0\n"
        "garbage\n"
    )
    mounts = inv.parse_mounts(text)
    assert [(m["mountpoint"], m["device"]) for m in mounts] == [
        ("/mnt/scratch space", "/dev/sdb1"), ("/data", "/dev/sdd1"), ("/runner", "tmpfs"),
    ]  # fmt: skip


def test_llc_bytes_counts_each_instance_once() -> None:
    l3 = 23040 * 1024
    two_sockets = [(3, "Unified", l3, "0-7,16-23")] * 16 + [(3, "Unified", l3, "8-15,24-31")] * 16
    l2 = [(2, "Unified", 2 * 1024**2, f"{c},{c + 16}") for c in range(16)]
    assert inv.llc_bytes(l2 + two_sockets) == 2 * 23040 * 1024
    assert inv.llc_bytes(l2) == 16 * 2 * 1024**2  # no L3: the L2s are the last level
    assert inv.llc_bytes([(1, "Instruction", 32768, "0"), (1, "Data", 49152, "0")]) == 49152
    assert inv.llc_bytes([]) is None


def test_human_bytes() -> None:
    assert inv.human_bytes(32 * 1024**2) == "32 MiB"
    assert inv.human_bytes(150754820096) == "140.4 GiB"
    assert inv.human_bytes(264223540 * 1024) == "252 GiB"  # 251.98, not "252.0"
    assert inv.human_bytes(512) == "512 B" and inv.human_bytes(None) == "?"


# ---------------------------------------------------------------------------
# collect() on fake roots


@pytest.fixture
def no_gpu() -> FakeNvml:
    return FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)


def test_collect_captured_vm(tmp_path: Path, no_gpu: FakeNvml) -> None:
    data = inv.collect(str(make_root(VM, tmp_path)), nvml=no_gpu).as_dict()
    assert set(data) == TOP_KEYS
    assert data["hostname"] == "vm"
    assert data["cpu"] == {
        "model": "AMD EPYC", "vendor": "AuthenticAMD", "sockets": 1, "cores": 2, "threads": 2,
        "llc_bytes": 32 * 1024**2, "governor": None, "governors": [],
    }  # fmt: skip
    assert data["numa"] == {"nodes": [{"id": 0, "cpus": [0, 1], "memory_bytes": 6121688 * 1024}]}
    assert data["memory"] == {
        "total_bytes": 24684096 * 1024,
        "hugepages": {"total": 0, "free": 0, "size_bytes": 2 * 1024**2},
        "thp": {"enabled": "madvise", "defrag": "madvise"},
    }
    assert data["tunables"] == {"numa_balancing": 0}
    assert data["os"] == {"kernel": "6.18.44-fc-v595", "name": "Debian GNU/Linux 12 (bookworm)"}
    assert data["storage"]["block_devices"] == [
        {"name": "vda", "model": None, "size_bytes": 536870912 * 512, "rotational": True, "removable": False}
    ]
    assert [m["mountpoint"] for m in data["storage"]["mounts"]] == ["/"]
    assert data["gpus"]["count"] == 0 and data["gpus"]["devices"] == []
    # this captured root has no sys/class/net: no port, no subject, nothing raised
    assert data["network"] == {
        "rdma_ports": [],
        "interfaces": [],
        "virtual_interfaces": [],
        "nics": [],
        "rails": [],
    }
    json.dumps(data)


def test_collect_two_socket_two_numa(tmp_path: Path, no_gpu: FakeNvml) -> None:
    data = inv.collect(str(make_root(XEON, tmp_path)), nvml=no_gpu).as_dict()
    assert data["hostname"] == "gpu-node-017"
    cpu = data["cpu"]
    assert (cpu["sockets"], cpu["cores"], cpu["threads"]) == (2, 16, 32)
    assert cpu["llc_bytes"] == 2 * 23040 * 1024  # one L3 per socket, not one per CPU
    assert cpu["governor"] == "performance"
    assert cpu["governors"] == ["performance", "powersave"]  # socket 1 is misconfigured
    nodes = data["numa"]["nodes"]
    assert [n["id"] for n in nodes] == [0, 1]
    assert nodes[0]["cpus"] == [*range(0, 8), *range(16, 24)]
    assert nodes[1]["cpus"] == [*range(8, 16), *range(24, 32)]
    assert [n["memory_bytes"] for n in nodes] == [263718296 * 1024, 264223540 * 1024]
    assert data["memory"]["total_bytes"] == (263718296 + 264223540) * 1024
    assert data["memory"]["hugepages"] == {"total": 1024, "free": 1000, "size_bytes": 2 * 1024**2}
    assert data["memory"]["thp"] == {"enabled": "always", "defrag": "madvise"}
    assert data["tunables"] == {"numa_balancing": 1}
    assert data["os"] == {"kernel": "5.14.0-427.13.1.el9_4.x86_64", "name": "Rocky Linux 9.4 (Blue Onyx)"}
    disks = {d["name"]: d for d in data["storage"]["block_devices"]}
    assert list(disks) == ["md0", "nvme0n1", "nvme1n1", "nvme2n1", "sda", "sdb"]  # loop0 skipped
    assert disks["nvme1n1"] == {
        "name": "nvme1n1", "model": "SAMSUNG MZQL27T6HBLA-00A07", "size_bytes": 15002931888 * 512,
        "rotational": False, "removable": False,
    }  # fmt: skip
    assert disks["sda"]["rotational"] and not disks["nvme0n1"]["rotational"]
    assert disks["sdb"]["removable"] and disks["sdb"]["model"] == "Virtual Floppy"
    assert disks["md0"]["model"] is None
    json.dumps(data)


def test_collect_without_numa_sysfs_gives_one_node(tmp_path: Path, no_gpu: FakeNvml) -> None:
    root = make_root(XEON, tmp_path)
    shutil.rmtree(root / "sys/devices/system/node")
    nodes = inv.collect(str(root), nvml=no_gpu).as_dict()["numa"]["nodes"]
    assert nodes == [{"id": 0, "cpus": list(range(32)), "memory_bytes": (263718296 + 264223540) * 1024}]


def test_collect_without_cpu_sysfs_falls_back_to_cpuinfo(tmp_path: Path, no_gpu: FakeNvml) -> None:
    root = make_root(XEON, tmp_path)
    shutil.rmtree(root / "sys/devices/system/cpu")
    cpu = inv.collect(str(root), nvml=no_gpu).as_dict()["cpu"]
    assert (cpu["sockets"], cpu["cores"], cpu["threads"]) == (2, 16, 32)
    assert cpu["llc_bytes"] is None and cpu["governor"] is None and cpu["governors"] == []


def test_collect_on_empty_root_never_raises(tmp_path: Path, no_gpu: FakeNvml) -> None:
    data = inv.collect(str(tmp_path), nvml=no_gpu).as_dict()
    assert set(data) == TOP_KEYS
    assert isinstance(data["hostname"], str) and data["hostname"]
    assert data["cpu"]["model"] == "unknown" and data["cpu"]["threads"] == 0
    assert data["memory"]["total_bytes"] is None
    assert data["memory"]["thp"] == {"enabled": None, "defrag": None}
    assert data["tunables"] == {"numa_balancing": None}
    assert data["storage"] == {"block_devices": [], "mounts": []}
    assert isinstance(data["os"]["kernel"], str) and isinstance(data["os"]["name"], str)
    json.dumps(data)
    assert inv.summary_lines(Inventory.from_dict(data))


# ---------------------------------------------------------------------------
# GPUs through the NVML seam


def test_gpus_h200_replay() -> None:
    fake = FakeNvml()
    gpus = nvml_seam.gpu_inventory(fake)
    assert gpus["count"] == 8 and gpus["reason"] is None
    assert gpus["driver_version"] == "570.124.06" and gpus["cuda_version"] == "12.8"
    assert gpus["devices"][0] == {
        "index": 0, "name": "NVIDIA H200", "pci_device_id": "0x233510DE", "pci_bus_id": "00000000:19:00.0",
        "serial": "1654224030000", "uuid": "GPU-6f1c2a7e-94b3-5d0e-8c1a-2b9e0f4d7a00",
        "memory_bytes": 150754820096, "error": None,
    }  # fmt: skip
    assert [d["pci_bus_id"][9:11] for d in gpus["devices"]] == FakeNvml.H200_BUS_IDS
    assert fake.calls[0] == "nvmlInit" and fake.calls[-1] == "nvmlShutdown"
    assert fake.calls.count("nvmlShutdown") == 1
    json.dumps(gpus)


def test_gpus_library_not_found() -> None:
    fake = FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    gpus = nvml_seam.gpu_inventory(fake)
    assert gpus == {
        "count": 0, "reason": "NVML unavailable: libnvidia-ml.so.1 not found",
        "driver_version": None, "cuda_version": None, "devices": [],
    }  # fmt: skip
    assert "nvmlShutdown" not in fake.calls  # never initialised, nothing to shut down


def test_gpus_driver_not_loaded() -> None:
    gpus = nvml_seam.gpu_inventory(FakeNvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    assert gpus["count"] == 0 and gpus["reason"].startswith("NVML unavailable: NVMLError_DriverNotLoaded")


def test_gpus_pynvml_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    gpus = nvml_seam.gpu_inventory()
    assert gpus["count"] == 0 and "not installed" in gpus["reason"] and gpus["devices"] == []


def test_gpus_unsupported_fields_are_none() -> None:
    fake = FakeNvml(
        count=2,
        failures={
            ("nvmlDeviceGetSerial", None): pynvml.NVML_ERROR_NOT_SUPPORTED,
            ("nvmlDeviceGetUUID", 1): pynvml.NVML_ERROR_NO_PERMISSION,
            ("nvmlSystemGetCudaDriverVersion_v2", None): pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        },
    )
    gpus = nvml_seam.gpu_inventory(fake)
    assert gpus["count"] == 2 and gpus["cuda_version"] is None and gpus["driver_version"] == "570.124.06"
    assert [d["serial"] for d in gpus["devices"]] == [None, None]
    assert gpus["devices"][0]["uuid"].startswith("GPU-") and gpus["devices"][1]["uuid"] is None
    assert all(d["name"] == "NVIDIA H200" and d["error"] is None for d in gpus["devices"])


def test_gpus_lost_device_keeps_its_slot() -> None:
    fake = FakeNvml(count=3, failures={("nvmlDeviceGetHandleByIndex", 1): pynvml.NVML_ERROR_GPU_IS_LOST})
    devices = nvml_seam.gpu_inventory(fake)["devices"]
    assert [d["name"] for d in devices] == ["NVIDIA H200", None, "NVIDIA H200"]
    assert devices[1]["error"] == "NVMLError_GpuIsLost: GPU is lost"
    assert fake.calls.count("nvmlShutdown") == 1


def test_gpus_count_failure_still_shuts_down() -> None:
    fake = FakeNvml(failures={("nvmlDeviceGetCount", None): pynvml.NVML_ERROR_UNKNOWN})
    gpus = nvml_seam.gpu_inventory(fake)
    assert gpus["count"] == 0 and "NVMLError_Unknown" in gpus["reason"]
    assert fake.calls[-1] == "nvmlShutdown"


def test_gpus_shutdown_error_is_ignored() -> None:
    fake = FakeNvml(count=1, failures={("nvmlShutdown", None): pynvml.NVML_ERROR_UNINITIALIZED})
    assert nvml_seam.gpu_inventory(fake)["count"] == 1


def test_cuda_version() -> None:
    assert nvml_seam.cuda_version(12080) == "12.8"
    assert nvml_seam.cuda_version(11020) == "11.2"
    assert nvml_seam.cuda_version(None) is None


# ---------------------------------------------------------------------------
# The real machine, and rendering


def test_collect_on_this_machine() -> None:
    data = inv.collect().as_dict()
    assert set(data) == TOP_KEYS
    json.dumps(data)
    assert data["cpu"]["threads"] >= 1 and data["cpu"]["cores"] >= 1 and data["cpu"]["sockets"] >= 1
    assert data["memory"]["total_bytes"] > 0
    assert data["numa"]["nodes"] and data["versions"]["python"]
    gpus = data["gpus"]
    if gpus["count"]:
        assert len(gpus["devices"]) == gpus["count"]
    else:
        assert gpus["reason"] and gpus["devices"] == []


def test_collect_does_not_import_torch() -> None:
    # its speed (under 0.15 s) is measured in benchmarks/test_inventory_speed.py, not asserted here
    code = "import sys, hpcbench.node.collector as i; i.collect(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_summary_lines(tmp_path: Path) -> None:
    data = inv.collect(str(make_root(XEON, tmp_path)), nvml=FakeNvml(count=2)).as_dict()
    lines = inv.summary_lines(Inventory.from_dict(data))
    assert (
        "CPU: Intel(R) Xeon(R) Gold 6434, 2 sockets, 16 cores, 32 threads, LLC 45 MiB, "
        "governor performance/powersave" in lines
    )
    assert "NUMA node 1: CPUs 8-15,24-31, memory 252 GiB" in lines
    assert "GPUs: 2, driver 570.124.06, CUDA 12.8" in lines
    assert "GPU 0: NVIDIA H200 (0x233510DE) at 00000000:19:00.0, 140.4 GiB" in lines
    assert "Mount: /local xfs on /dev/md0" in lines
    assert all("\n" not in line for line in lines)


def test_summary_lines_vm_and_partial_records(tmp_path: Path) -> None:
    no_gpu = FakeNvml(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    data = inv.collect(str(make_root(VM, tmp_path)), nvml=no_gpu).as_dict()
    lines = inv.summary_lines(Inventory.from_dict(data))
    assert any(line.startswith("CPU: AMD EPYC, 1 socket, 2 cores, 2 threads, LLC 32 MiB") for line in lines)
    assert "GPUs: none (NVML unavailable: libnvidia-ml.so.1 not found)" in lines
    assert inv.summary_lines(Inventory.from_dict({}))  # an old or partial record renders, it does not raise


def _pci_function(root: Path, address: str, vendor: str, pci_class: str) -> None:
    dev = root / "sys/bus/pci/devices" / address
    dev.mkdir(parents=True)
    (dev / "vendor").write_text(vendor + "\n")
    (dev / "class").write_text(pci_class + "\n")


def test_gpus_on_the_pci_bus_that_nvml_cannot_see_are_an_error_not_a_cpu_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU node whose nvidia-ml-py is missing must not SKIP its GPU checks as a CPU node does."""
    from hpcbench.engine.plan import Unrunnable, expand
    from hpcbench.engine.suite import CheckSpec
    from hpcbench.probes.base import Requirement

    root = make_root(VM, tmp_path)
    _pci_function(root, "0000:17:00.0", "0x10de", "0x030200")  # an NVIDIA 3D controller
    _pci_function(root, "0000:00:02.0", "0x1af4", "0x010000")  # a virtio disk
    monkeypatch.setitem(sys.modules, "pynvml", None)
    data = inv.collect(str(root)).as_dict()
    assert data["gpus"]["count"] == 0 and data["gpus"]["pci_nvidia_gpus"] == 1
    status, reason, hint = inv.gpu_absence(Inventory.from_dict(data))
    assert status == "error" and reason == (
        "no usable GPU: NVML unavailable: nvidia-ml-py (pynvml) is not installed; "
        "the PCI bus has 1 NVIDIA GPU"
    )
    assert "nvidia-ml-py" in hint
    check = CheckSpec(id="g", probe="gemm", expand="gpu")
    assert expand(check, SimpleNamespace(expands={"gpu": "device"}), Inventory.from_dict(data)) == Unrunnable(
        status, reason, hint
    )
    assert Requirement("gpu").unmet(Inventory.from_dict(data)) == ("ERROR", reason, hint)
    assert f"GPUs: {reason}" in inv.summary_lines(Inventory.from_dict(data))
    # the same node without NVIDIA functions on the bus: a CPU node, SKIP
    data["gpus"]["pci_nvidia_gpus"] = 0
    assert inv.gpu_absence(Inventory.from_dict(data)) == ("skip", "no GPU on this node", "")
    assert Requirement("gpu").unmet(Inventory.from_dict(data)) == ("SKIP", "no GPU on this node", "")
