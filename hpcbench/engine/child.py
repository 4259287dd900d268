"""The child process that runs one probe: ``python -m hpcbench.engine.child JOB.json OUT.json``.

It reads the job (``handoff.ChildJob``), runs the probe, and writes its ``handoff.ChildResult``
atomically. Whatever the probe does (raise, hang, crash the interpreter), the parent learns of it:
an exception is written as an error result; a crash leaves no OUT.json and a non-zero exit
status, which the runner turns into ERROR.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any


def run_job(job: Any, probe: Any = None) -> Any:
    """The ChildResult of one ChildJob; ``probe``: its ProbeSpec when the caller has it (a forked
    batch child), else it is loaded by name."""
    from hpcbench.core.errors import HpcbenchError, ProbeError, ProbeSkip
    from hpcbench.core.measurement import Unmeasured
    from hpcbench.engine.handoff import ChildResult
    from hpcbench.probes import registry
    from hpcbench.probes.base import ProbeContext, build_params, params_as_dict

    try:
        probe = probe if probe is not None else registry.load(job.probe)
        params = build_params(probe, job.params)
        ctx = ProbeContext(
            subject=job.subject,
            inventory=job.inventory,
            workdir=job.workdir,
            timeout=job.timeout,
            gpus=job.gpus,
        )
        results = probe.instance().run(params, ctx)
        return ChildResult(
            "ok",
            params=params_as_dict(params),
            measurements=tuple(m for m in results if not isinstance(m, Unmeasured)),
            unmeasured=tuple(u for u in results if isinstance(u, Unmeasured)),
        )
    except ProbeSkip as exc:
        return ChildResult("skip", reason=str(exc))
    except ProbeError as exc:
        return ChildResult("error", reason=str(exc), hint=exc.hint)
    except HpcbenchError as exc:
        return ChildResult("error", reason=str(exc))
    except Exception as exc:  # a probe's bug is an ERROR verdict, never a lost run
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno}" if tb else ""
        return ChildResult(
            "error", reason=f"probe raised {type(exc).__name__}: {exc}{where}", detail=traceback.format_exc()
        )


def main(argv: list[str]) -> int:
    from hpcbench.engine import handoff

    job_path, out_path = argv
    handoff.write(out_path, run_job(handoff.read_job(job_path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
