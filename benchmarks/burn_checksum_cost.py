"""What checking every GEMM output costs (probes/burn/checksum.py): GEMM time with and
without ``OutputChecksum.add`` after each, alternating, on the CPU (or a GPU when one is there:
``--device cuda``). Prints the ratio of the fastest repeats (the least disturbed by other load on a
shared machine) and the median and range of the paired ratios.

    .venv/bin/python benchmarks/burn_checksum_cost.py                    # CPU, fp32 512^3, 1 thread
    .venv/bin/python benchmarks/burn_checksum_cost.py --device cuda --dtype bf16 --size 8192
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    import torch

    from hpcbench.hw import matmul as mm
    from hpcbench.probes.burn.checksum import OutputChecksum

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--gemms", type=int, default=40, help="GEMMs per timed repeat")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = mm.Shape(args.size, args.size, args.size)
    x, w = mm.operands(
        torch, args.device, args.dtype, shape, torch.Generator(device=args.device).manual_seed(0)
    )
    a, bt = x[0], w[0].t()
    y = torch.mm(a, bt)
    sums = OutputChecksum(torch, y.clone())
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def timed(check: bool) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(args.gemms):
            torch.mm(a, bt, out=y)
            if check:
                sums.add(y)
        sums.read() if check else sync()
        return time.perf_counter() - t0

    timed(True), timed(False)  # warm
    ratios, plains, checks = [], [], []
    for _ in range(args.repeats):
        plain, checked = timed(False), timed(True)
        ratios.append(checked / plain)
        plains.append(plain)
        checks.append(checked)
    print(
        f"{args.device} {args.dtype} {args.size}^3, {args.gemms} GEMMs x {args.repeats} repeats: "
        f"every-output checksum costs {min(checks) / min(plains) - 1:+.1%} of the GEMM time (fastest "
        f"repeat of each; median of paired ratios {statistics.median(ratios) - 1:+.1%}, range "
        f"{min(ratios) - 1:+.1%} .. {max(ratios) - 1:+.1%}); wrong outputs counted: {sums.read()}"
    )


if __name__ == "__main__":
    main()
