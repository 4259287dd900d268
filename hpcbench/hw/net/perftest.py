"""perftest's ``ib_write_bw`` and ``ib_read_lat``: argv lists and parsers of their text output.

The parsers are pure functions of the text perftest prints (server or client side, or both
interleaved in one log), tested on captured output of several versions
(tests/probes/network/fixtures/network/perftest/):

- bandwidth: the result line under the header ``#bytes #iterations BW peak[..] BW average[..]
  MsgRate[Mpps]``. The unit is ``Gb/sec`` with ``--report_gbits`` (1e9 bit/s: perftest divides
  bytes by 125e6), else ``MB/sec`` (perftest < 24.07) or ``MiB/sec`` (24.07 on), which are both
  2**20 bytes per second: Gb/s = value * 2**20 * 8 / 1e9. With a size sweep (``-a``) the largest
  size's line is taken. ``BW average`` is reported (``BW peak`` is 0 in ``-D`` duration runs).
- latency: the line under ``#bytes #iterations t_min[usec] t_max[usec] t_typical[usec] t_avg[usec]
  t_stdev[usec] 99% percentile[usec] 99.9% percentile[usec]``; t_typical is the median.

Noise perftest prints between header and result ("Conflicting CPU frequency values detected")
is skipped. A known error line (no device, cannot connect, unknown option) is the error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Gb/s per unit of perftest's bandwidth columns
UNIT_GBPS = {"Gb/sec": 1.0, "MB/sec": 2**20 * 8 / 1e9, "MiB/sec": 2**20 * 8 / 1e9}
#: error lines of perftest (src/perftest_*.c), first match wins
ERRORS = (
    "Unsupported memory type",
    "CUDA DMA-BUF cannot be used without CUDA",
    "unrecognized option",
    "invalid option",
    "No IB devices found",
    "IB device",
    "Unable to find the Infiniband/RoCE device",
    "Couldn't connect to",
    "Couldn't listen to port",
    "Unable to open file descriptor for socket connection",
    "Failed to",
    "Couldn't",
)
_NUM = r"(-?[\d.]+(?:e[+-]?\d+)?)"
_BW_HEADER = re.compile(r"#bytes\s+#iterations\s+BW peak\[([^\]]+)\]\s+BW average\[([^\]]+)\]")
_LAT_HEADER = re.compile(r"#bytes\s+#iterations\s+t_min\[usec\].*t_typical\[usec\]")
_ROW = re.compile(r"^\s*(\d+)\s+(\d+)((?:\s+" + _NUM + r")+)\s*$")


class PerftestError(Exception):
    """perftest printed no result; the message says why (its error line, or what is missing)."""


@dataclass(frozen=True)
class BwResult:
    size_bytes: int
    iterations: int
    bw_peak_gbps: float
    bw_average_gbps: float
    msg_rate_mpps: float
    unit: str  # the unit perftest printed (Gb/sec, MB/sec, MiB/sec)
    test: str  # "RDMA_Write BW Test"
    link_type: str | None
    mtu: str | None


@dataclass(frozen=True)
class LatResult:
    size_bytes: int
    iterations: int
    t_min_us: float
    t_max_us: float
    t_typical_us: float
    t_avg_us: float
    t_stdev_us: float
    p99_us: float
    p999_us: float
    test: str
    link_type: str | None


def _field(text: str, name: str) -> str | None:
    m = re.search(rf"^\s*{re.escape(name)}\s*:\s*(\S+)", text, re.M)
    return m.group(1) if m else None


def _title(text: str) -> str:
    m = re.search(r"^\s*((?:RDMA_Write|RDMA_Read|Send|Atomic)[^\n]*?(?:BW|Latency) Test)\s*$", text, re.M)
    return m.group(1) if m else "?"


def error_line(text: str) -> str | None:
    """The first line that is a known perftest error, stripped."""
    for marker in ERRORS:
        for line in text.splitlines():
            if marker in line:
                return line.strip()
    return None


def _rows(lines: list[str], start: int, columns: int) -> list[tuple[int, int, list[float]]]:
    rows = []
    for line in lines[start:]:
        m = _ROW.match(line)
        if not m:
            continue
        values = [float(v) for v in m.group(3).split()]
        if len(values) >= columns:
            rows.append((int(m.group(1)), int(m.group(2)), values))
    return rows


def parse_bw(text: str) -> BwResult:
    """The bandwidth result of ib_write_bw (or ib_read_bw, ib_send_bw) output."""
    lines = text.splitlines()
    headers = [(i, m) for i, line in enumerate(lines) if (m := _BW_HEADER.search(line))]
    if not headers:
        raise PerftestError(error_line(text) or "no '#bytes #iterations BW peak' header in the output")
    index, header = headers[-1]
    unit = header.group(2)
    if unit not in UNIT_GBPS:
        raise PerftestError(f"unknown bandwidth unit {unit!r} in perftest's header")
    rows = _rows(lines, headers[0][0] + 1, 3)
    if not rows:
        raise PerftestError(error_line(text) or "perftest printed its header but no result line")
    size, iters, values = max(rows, key=lambda r: r[0])
    factor = UNIT_GBPS[unit]
    return BwResult(
        size_bytes=size,
        iterations=iters,
        bw_peak_gbps=values[0] * factor,
        bw_average_gbps=values[1] * factor,
        msg_rate_mpps=values[2],
        unit=unit,
        test=_title(text),
        link_type=_field(text, "Link type"),
        mtu=_field(text, "Mtu"),
    )


def parse_lat(text: str) -> LatResult:
    """The latency result of ib_read_lat (or ib_write_lat, ib_send_lat) output."""
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if _LAT_HEADER.search(line)]
    if not headers:
        if "t_avg[usec]" in text and "tps average" in text:
            raise PerftestError("a duration (-D) latency run prints no t_typical and no percentiles")
        raise PerftestError(error_line(text) or "no '#bytes #iterations t_min[usec]' header in the output")
    rows = _rows(lines, headers[0] + 1, 7)
    if not rows:
        raise PerftestError(error_line(text) or "perftest printed its header but no result line")
    size, iters, v = min(rows, key=lambda r: r[0])
    return LatResult(
        size, iters, v[0], v[1], v[2], v[3], v[4], v[5], v[6], _title(text), _field(text, "Link type")
    )


@dataclass(frozen=True)
class Capabilities:
    """What a perftest binary can do, from its ``--help``: perftest lists ``--use_cuda``,
    ``--use_cuda_bus_id`` and ``--use_cuda_dmabuf`` only when it was built with CUDA (and dma-buf)
    support (src/perftest_parameters.c's usage()); Debian's and Ubuntu's perftest lists none."""

    cuda: bool
    cuda_bus_id: bool
    cuda_dmabuf: bool


def parse_help(text: str) -> Capabilities:
    """The capabilities a perftest ``--help`` text announces."""
    return Capabilities(
        cuda="--use_cuda=" in text,
        cuda_bus_id="--use_cuda_bus_id" in text,
        cuda_dmabuf="--use_cuda_dmabuf" in text,
    )


def cuda_ordinal(
    bus_id: str, gpu_bus_ids: list[str], visible: str | None, uuids: dict[str, str] | None = None
) -> tuple[int | None, str]:
    """(the CUDA device number of the GPU at ``bus_id``, why) for ``--use_cuda``, which takes a
    CUDA device number, not the NVML index: CUDA numbers the GPUs ``CUDA_VISIBLE_DEVICES``
    (``visible``) names, in the order it names them (indices into PCI bus order, as
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and as the default fastest-first order is on a node of
    identical GPUs; or ``GPU-`` UUIDs, mapped to bus ids by ``uuids``, as the runner sets them).
    None when the GPU is not visible or an entry cannot be mapped (a MIG instance)."""
    ordered = sorted(a.lower() for a in gpu_bus_ids)
    mine = bus_id.lower()
    if mine not in ordered:
        return None, f"GPU {bus_id} is not among the node's GPUs"
    if visible is None:
        return ordered.index(mine), "all GPUs visible, PCI bus order"
    names = [v.strip() for v in visible.split(",") if v.strip()]
    known = {k.lower(): v.lower() for k, v in (uuids or {}).items()}
    if not all(v.isdigit() or v.lower() in known for v in names):
        return None, f"CUDA_VISIBLE_DEVICES={visible!r} names a GPU that is not mapped here (a MIG instance?)"
    shown = [
        (ordered[int(v)] if int(v) < len(ordered) else "") if v.isdigit() else known[v.lower()] for v in names
    ]
    if mine not in shown:
        return None, f"GPU {bus_id} is not in CUDA_VISIBLE_DEVICES={visible!r}"
    return shown.index(mine), f"CUDA_VISIBLE_DEVICES={visible!r}, PCI bus order"


@dataclass(frozen=True)
class Endpoint:
    """One side of a perftest run: an RDMA device's port, and the GPU whose memory it uses."""

    device: str  # mlx5_0
    port: int = 1
    cuda: int | None = None  # CUDA device number for --use_cuda
    dmabuf: bool = False  # --use_cuda_dmabuf (GPUDirect through dma-buf, perftest >= 23.04)
    cuda_bus_id: str | None = None  # --use_cuda_bus_id (the GPU's PCI address), where perftest has it


def _common(tool: str, end: Endpoint, tcp_port: int, gid_index: int) -> list[str]:
    argv = [tool, "-d", end.device, "-i", str(end.port), "-p", str(tcp_port), "-F"]
    if gid_index >= 0:
        argv += ["-x", str(gid_index)]
    if end.cuda_bus_id is not None:
        argv.append(f"--use_cuda_bus_id={end.cuda_bus_id}")
    elif end.cuda is not None:
        argv.append(f"--use_cuda={end.cuda}")
    if end.dmabuf and (end.cuda_bus_id is not None or end.cuda is not None):
        argv.append("--use_cuda_dmabuf")
    return argv


def bw_argv(
    end: Endpoint, tcp_port: int, size: int, duration_s: int, qps: int, gid_index: int, server: str | None
) -> list[str]:
    """ib_write_bw's argv; ``server`` None: the server side, else the host the client connects to."""
    argv = _common("ib_write_bw", end, tcp_port, gid_index)
    argv += ["-s", str(size), "-D", str(duration_s), "-q", str(qps), "--report_gbits", "--perform_warm_up"]
    return argv + ([server] if server else [])


def lat_argv(
    end: Endpoint, tcp_port: int, size: int, iterations: int, gid_index: int, server: str | None
) -> list[str]:
    """ib_read_lat's argv (no duration: a -D run prints no percentiles)."""
    argv = _common("ib_read_lat", end, tcp_port, gid_index) + ["-s", str(size), "-n", str(iterations)]
    return argv + ([server] if server else [])
