"""``make gpu-verify``: every GPU path of burn and memtest once on GPU 0, with the checks that prove
it, in under 6 minutes on one H200, then a summary table of what held.

1. every-GEMM bit-exactness (``verify_every_s=0``, every output's checksum) for bf16 and fp8;
2. the first output's digest equal across two processes;
3. a 90 s burn with host load, beside an independent ``nvidia-smi`` sampling its SM clock and power;
4. memtest over 90% of the HBM (one pass of every pattern), the ECC counters diffed by ``nvidia-smi``;
5. SIGTERM in the middle of a burn: no process of it and no GPU memory of it left behind.

Each step runs ``hpcbench probe ...`` as a user would (a child process, argv list, timeout) and
reads its JSON record. On a machine without an NVIDIA GPU it prints one line and exits 3 (nothing
could be measured). Exit 0 when every step held, 2 when one did not.

    .venv/bin/python scripts/gpu_verify.py [--gpu 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HPCBENCH = [sys.executable, "-m", "hpcbench"]
NO_GPU_EXIT = 3


@dataclass(frozen=True)
class Step:
    name: str
    held: bool
    numbers: str


def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def no_gpu_reason(smi: str | None) -> str | None:
    """Why this machine cannot run the verification, or None when nvidia-smi lists a GPU."""
    if smi is None:
        return "nvidia-smi not found"
    try:
        done = run([smi, "-L"], 20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi -L: {exc}"
    if done.returncode != 0 or "GPU 0" not in done.stdout:
        first = (done.stdout + done.stderr).strip().splitlines()
        return f"nvidia-smi -L lists no GPU ({first[0] if first else f'exit {done.returncode}'})"
    return None


def smi_query(smi: str, gpu: int, fields: str) -> list[str]:
    done = run([smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits", "-i", str(gpu)], 30)
    return [v.strip() for v in done.stdout.strip().split(",")]


def probe(name: str, gpu: int, out: Path, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    """``hpcbench probe NAME -p k=v ... --format json``: the record's one check."""
    argv = [*HPCBENCH, "probe", name, "-p", f"device={gpu}", "--format", "json", "--output", str(out)]
    for k, v in params.items():
        argv += ["-p", f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"]
    done = run(argv, timeout)
    try:
        return dict(json.loads(done.stdout)["checks"][0])
    except (ValueError, KeyError, IndexError):
        return {"verdict": "ERROR", "reason": (done.stderr or done.stdout).strip()[-300:], "measurements": []}


def metric(check: dict[str, Any], name: str) -> dict[str, Any]:
    return next((m for m in check.get("measurements", []) if m["metric"] == name), {})


def bit_exact(gpu: int, out: Path, dtype: str) -> Step:
    c = probe("burn", gpu, out, {"dtype": dtype, "duration_s": 15, "window_s": 5, "verify_every_s": 0}, 150)
    main = metric(c, f"{dtype}_sustained")
    v = main.get("settings", {}).get("verification", {})
    every = v.get("every_output", {})
    held = (
        bool(main)
        and main.get("sanity") is None
        and not v.get("corruptions")
        and not every.get("flip_windows")
    )
    numbers = (
        f"{main.get('value', 0):.1f} TFLOPS, {v.get('verifications', 0)} full compares, "
        f"{every.get('checked', 0)} outputs checksummed, sanity {main.get('sanity') or 'none'}"
        if main
        else c.get("reason", "no record")
    )
    return Step(f"every GEMM bit-exact, {dtype}", held, numbers)


def digests(gpu: int, out: Path) -> Step:
    params = {"duration_s": 3, "window_s": 1, "warmup_s": 0}
    got = [
        metric(probe("burn", gpu, out, params, 120), "bf16_sustained")
        .get("settings", {})
        .get("verification", {})
        .get("first_output_sha256")
        for _ in range(2)
    ]
    held = got[0] is not None and got[0] == got[1]
    return Step("first-output digest equal in two processes", held, f"{got[0] or '?'} / {got[1] or '?'}"[:80])


def burn_beside_smi(smi: str, gpu: int, out: Path) -> Step:
    log = out / "nvidia-smi.csv"
    fields = "clocks.sm,power.draw,temperature.gpu"
    with open(log, "w") as fh:
        sampler = subprocess.Popen(
            [smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits", "-i", str(gpu), "-lms", "1000"],
            stdout=fh,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        try:
            c = probe("burn", gpu, out, {"duration_s": 90, "window_s": 10, "host_load": "true"}, 300)
        finally:
            sampler.terminate()
            try:
                sampler.wait(10)
            except subprocess.TimeoutExpired:
                sampler.kill()
    rows = [
        [float(x) for x in line.split(",")] for line in log.read_text().splitlines() if line.count(",") == 2
    ]
    smi_sm = statistics.median(r[0] for r in rows) if rows else 0.0
    main = metric(c, "bf16_sustained")
    tel = main.get("settings", {}).get("telemetry", {})
    ours = (tel.get("sm_clock_mhz") or {}).get("median", 0.0)
    by = {m["metric"]: m.get("value") for m in c.get("measurements", [])}
    agree = smi_sm > 0 and abs(ours - smi_sm) <= 0.05 * smi_sm
    held = c.get("verdict") in ("PASS", "WARN", "NOBASELINE") and main.get("sanity") is None and agree
    numbers = (
        f"{by.get('bf16_sustained', 0) or 0:.1f} TFLOPS, stability {by.get('stability') or 0:.3f}, "
        f"droop {by.get('droop') or 0:.3f}, hw_slowdown {by.get('hw_slowdown_s')} s, "
        f"sw_power_cap {by.get('sw_power_cap_s')} s; SM median {ours:.0f} MHz vs nvidia-smi {smi_sm:.0f}"
    )
    return Step("90 s burn + host load, nvidia-smi agrees", held, numbers)


def memtest_ecc(smi: str, gpu: int, out: Path) -> Step:
    fields = "ecc.errors.corrected.volatile.total,ecc.errors.uncorrected.volatile.total"
    before = smi_query(smi, gpu, fields)
    started = time.monotonic()
    c = probe("memtest", gpu, out, {"fraction": 0.9, "passes": 1, "max_time_s": 150}, 240)
    minutes = (time.monotonic() - started) / 60
    after = smi_query(smi, gpu, fields)
    wrong = metric(c, "mismatched_words")
    bw = metric(c, "bandwidth").get("value") or 0.0
    tested = wrong.get("settings", {}).get("tested_bytes", 0) / 2**30
    by = {m["metric"]: m.get("value") for m in c.get("measurements", [])}
    smi_new = [
        int(a) - int(b) if a.isdigit() and b.isdigit() else None for a, b in zip(after, before, strict=False)
    ]
    ours = [by.get("ecc_correctable_new"), by.get("ecc_uncorrectable_new")]
    agree = [float(x) if x is not None else None for x in smi_new] == ours
    held = wrong.get("value") == 0 and not wrong.get("settings", {}).get("could_not_measure") and agree
    numbers = (
        f"{tested:.1f} GiB in {minutes:.1f} min, {bw:.0f} GB/s, {wrong.get('value')} wrong words; ECC new "
        f"(corrected, uncorrected) ours {ours} vs nvidia-smi {smi_new}"
    )
    return Step("memtest over 90% of HBM, ECC diffed", held, numbers)


def sigterm_mid_burn(smi: str, gpu: int, out: Path) -> Step:
    used_before = smi_query(smi, gpu, "memory.used")[0]
    argv = [*HPCBENCH, "probe", "burn", "-p", f"device={gpu}", "-p", "duration_s=60", "--output", str(out)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )
    time.sleep(25)
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = None
    time.sleep(3)
    apps = run([smi, "--query-compute-apps=pid", "--format=csv,noheader", "-i", str(gpu)], 30).stdout.split()
    used_after = smi_query(smi, gpu, "memory.used")[0]
    held = code is not None and not apps and used_after.isdigit() and used_before.isdigit()
    held = held and int(used_after) <= int(used_before) + 64
    numbers = (
        f"exit {code}, compute processes left {apps or 'none'}, memory used {used_before} -> {used_after} MiB"
    )
    return Step("SIGTERM mid-burn leaves nothing behind", held, numbers)


def table(steps: list[Step]) -> str:
    width = max(len(s.name) for s in steps)
    lines = [f"{'step'.ljust(width)}  held  numbers"]
    lines += [f"{s.name.ljust(width)}  {'yes ' if s.held else 'NO  '}  {s.numbers}" for s in steps]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="every GPU path of burn and memtest once, verified")
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--out", default="", help="where the records go (default: a temporary folder)")
    args = ap.parse_args(argv)
    smi = shutil.which("nvidia-smi")
    why = no_gpu_reason(smi)
    if why is not None:
        print(f"gpu-verify: no NVIDIA GPU here ({why}): nothing run")
        return NO_GPU_EXIT
    assert smi is not None
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu-verify-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HPCBENCH_LOCK", str(out / "hpcbench.lock"))
    started = time.monotonic()
    steps = [
        bit_exact(args.gpu, out, "bf16"),
        bit_exact(args.gpu, out, "fp8"),
        digests(args.gpu, out),
        burn_beside_smi(smi, args.gpu, out),
        memtest_ecc(smi, args.gpu, out),
        sigterm_mid_burn(smi, args.gpu, out),
    ]
    print(table(steps))
    print(f"gpu-verify: {time.monotonic() - started:.0f} s, records in {out}")
    return 0 if all(s.held for s in steps) else 2


if __name__ == "__main__":
    sys.exit(main())
