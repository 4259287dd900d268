"""The child process that runs one probe: ``python -m hpcbench.worker JOB.json OUT.json``.

It reads the job, runs the probe, and writes the outcome atomically. Whatever
the probe does (raise, hang, crash the interpreter), the parent learns of it:
an exception is written as an error outcome; a crash leaves no OUT.json and a
non-zero exit status, which the runner turns into ERROR.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any


def run_job(job: dict[str, Any], probe: Any = None) -> dict[str, Any]:
    """Run one job; ``probe``: its ProbeSpec when the caller has it (a forked batch child), else
    it is loaded by name."""
    from hpcbench.errors import HpcbenchError, ProbeError, ProbeSkip
    from hpcbench.node import Inventory
    from hpcbench.probes import registry
    from hpcbench.probes.base import ProbeContext, build_params, params_as_dict

    try:
        probe = probe if probe is not None else registry.load(job["probe"])
        params = build_params(probe, job["params"])
        ctx = ProbeContext(
            subject=job["subject"],
            inventory=Inventory.from_dict(job["inventory"]),
            workdir=job["workdir"],
            timeout=job.get("timeout"),
            gpus=tuple(job["gpus"]) if job.get("gpus") is not None else None,
        )
        measurements = probe.instance().run(params, ctx)
        return {
            "status": "ok",
            "params": params_as_dict(params),
            "measurements": [m.as_dict() for m in measurements],
        }
    except ProbeSkip as exc:
        return {"status": "skip", "reason": str(exc)}
    except ProbeError as exc:
        return {"status": "error", "reason": str(exc), "hint": exc.hint}
    except HpcbenchError as exc:
        return {"status": "error", "reason": str(exc)}
    except Exception as exc:  # a probe's bug is an ERROR verdict, never a lost run
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno}" if tb else ""
        return {
            "status": "error",
            "reason": f"probe raised {type(exc).__name__}: {exc}{where}",
            "detail": traceback.format_exc(),
        }


def main(argv: list[str]) -> int:
    job_path, out_path = argv
    with open(job_path, encoding="utf-8") as fh:
        job = json.load(fh)
    from hpcbench.atomic import write_json

    write_json(out_path, run_job(job), allow_nan=True, durable=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
