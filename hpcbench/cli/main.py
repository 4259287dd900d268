"""Argument parsing and dispatch only. Heavy modules are imported inside the commands."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from hpcbench import __version__
from hpcbench.core.errors import ConfigError, HpcbenchError, LockHeld
from hpcbench.core.exitcodes import ExitCode

EPILOG = """exit codes (Nagios-compatible): 0 OK, 1 WARN, 2 FAIL, 3 UNKNOWN (could not measure, or a
required baseline is missing), 4 usage or configuration error. A run's code is its worst check's."""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line and exit code 4."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_run_options(p: argparse.ArgumentParser, suite_options: bool = True) -> None:
    p.add_argument(
        "--baseline",
        metavar="FILE|NAME",
        help="baseline profile to compare with (default: the "
        "bundled profile that matches this node's inventory)",
    )
    p.add_argument(
        "--output",
        "-o",
        metavar="DIR",
        help="folder for result records: DIR/<host>/<UTC time>.json (default: $HPCBENCH_OUTPUT, the "
        "config file's output, else /var/lib/hpcbench/results as root; see hpcbench config)",
    )
    p.add_argument(
        "--format",
        choices=("table", "json", "nagios"),
        default="table",
        help="stdout: the verdict table; the result record as JSON and nothing else; or one Nagios/NRPE "
        "line with performance data (the exit code is the Nagios state)",
    )
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress and no table; one summary line on stdout only when the verdict is not OK",
    )
    p.add_argument(
        "--lock-file",
        metavar="FILE",
        help="the node's run lock (default: $HPCBENCH_LOCK, the config file's lock, else "
        "/run/hpcbench/hpcbench.lock as root, $XDG_RUNTIME_DIR/hpcbench.lock for another user)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="run GPU-loading probes even on GPUs another process uses (default: SKIP them as busy)",
    )
    sel = p.add_argument_group("choosing what runs")
    if suite_options:
        sel.add_argument("--only", metavar="ID[,ID]", help="run only these checks of the suite")
        sel.add_argument("--skip", metavar="ID[,ID]", help="run the suite without these checks")
    else:  # every run command's namespace holds every run option (hpcbench.cli.request reads them)
        p.set_defaults(only=None, skip=None)
    sel.add_argument(
        "--gpus",
        metavar="N[,N]",
        help="the GPUs to use (NVML indices, as hpcbench inventory lists them); default: those "
        "CUDA_VISIBLE_DEVICES names, else all",
    )
    sel.add_argument(
        "--dry-run",
        action="store_true",
        help="print the expanded checks, subjects, parameters, timeouts, the baseline that would "
        "match and the estimated duration; run nothing",
    )
    sel.add_argument(
        "--deadline",
        metavar="DURATION",
        help="the whole run ends within DURATION (e.g. 10m): a check that could not finish in time is "
        "not started, a running one is stopped in time, the record is written before it",
    )
    ops = p.add_argument_group("operations (cron, CI, monitoring)")
    ops.add_argument(
        "--log-file", metavar="FILE", help="append timestamped progress lines and a one-line summary to FILE"
    )
    ops.add_argument(
        "--max-age",
        metavar="DURATION",
        help="exit 0 without running when this host's newest record of the suite in --output passed "
        "(OK) within DURATION (e.g. 20h, 90m, 2d)",
    )
    ops.add_argument("--junit", metavar="FILE", help="also write the verdicts as JUnit XML to FILE")
    ops.add_argument(
        "--prometheus-textfile",
        metavar="DIR",
        help="also write DIR/hpcbench_<suite>.prom for node_exporter's textfile collector",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hpcbench",
        description="Node-level hardware benchmark and validation for GPU/LLM clusters.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"hpcbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("list", help="the installed probes, their descriptions and parameters")
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = sub.add_parser(
        "inventory", help="what this node is: CPU, NUMA, memory, GPUs, disks, versions, tunables"
    )
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = sub.add_parser("run", help="run a suite on this node and judge every check", epilog=EPILOG)
    p.add_argument(
        "suite",
        nargs="?",
        default="quick",
        help="suite file or bundled name: quick, nightly, acceptance (default: quick)",
    )
    _add_run_options(p)

    p = sub.add_parser("probe", help="run one probe on this node (no suite needed)", epilog=EPILOG)
    p.add_argument("name", help="probe name (see hpcbench list)")
    p.add_argument(
        "-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="a probe parameter"
    )
    p.add_argument(
        "--expand",
        choices=("none", "numa", "gpu", "mount", "nic", "rail"),
        default="none",
        help="run once per NUMA node, GPU, mount, NIC port or compute rail (all rails at once)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before the probe is killed (600)")
    _add_run_options(p, suite_options=False)

    p = sub.add_parser("baseline", help="baseline profiles")
    bsub = p.add_subparsers(dest="baseline_command", metavar="ACTION", parser_class=_Parser, required=True)
    c = bsub.add_parser("create", help="a baseline profile from golden-node records, or from a fleet")
    c.add_argument("records", nargs="*", metavar="RECORD", help="result record files or folders of them")
    c.add_argument(
        "--from-fleet",
        action="append",
        metavar="DIR",
        help="the latest record of every node under DIR, outliers removed iteratively (fleet-median)",
    )
    c.add_argument("--suite", help="with --from-fleet: only this suite's records")
    c.add_argument("-o", "--output", required=True, metavar="FILE", help="the baseline TOML to write")
    c.add_argument("--name", help="profile name (default: the output file's stem)")
    c.add_argument(
        "--source",
        choices=("golden-node", "fleet-median"),
        default=None,
        help="provenance source (default: golden-node, or fleet-median with --from-fleet)",
    )
    c.add_argument(
        "--match",
        choices=("cpu_model", "gpu_name", "none"),
        default=None,
        help="what the profile matches on (default: gpu_name on GPU nodes, else cpu_model)",
    )
    c.add_argument(
        "--site-suite",
        metavar="FILE",
        help="from a health run's record: also write FILE, a suite that includes health and expects this "
        "node's CPU layout, memory, mounts, daemons, BIOS, GPU count and driver (docs/health.md)",
    )
    c.add_argument("--force", action="store_true", help="overwrite an existing output file")

    p = sub.add_parser(
        "config", help="the settings in force (output, baselines, suites, lock) and where each came from"
    )
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = sub.add_parser("schema", help="print a published JSON Schema (the result record's)")
    p.add_argument("name", choices=("record",), help="record: one run's result record")

    p = sub.add_parser(
        "validate",
        help="check result records against the published schema (exit 0 valid, 4 with a line per problem)",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="record files, or folders of them")

    from hpcbench.analysis.commands import add_parsers
    from hpcbench.cli.slurm_args import add_parser as add_slurm_parser

    add_parsers(sub)
    add_slurm_parser(sub, _add_run_options)
    return parser


def _parse_kv(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-p {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def cmd_list(args: argparse.Namespace) -> int:
    from hpcbench.probes import registry
    from hpcbench.probes.base import param_specs

    found = registry.catalog()
    if args.format == "json":
        import json

        out = [
            {
                "name": n,
                "description": c.description,
                "package": c.package,
                "requires": [r.kind + (f":{r.name}" if r.name else "") for r in c.requires],
                "expands": sorted(c.expands),
                "params": [s.__dict__ for s in param_specs(c.Params)],
            }
            for n, c in found.probes.items()
        ]
        out += [
            {"name": n, "broken": b.reason, "package": b.package, "source": b.source}
            for n, b in found.broken.items()
        ]
        print(json.dumps(sorted(out, key=lambda p: p["name"]), indent=1, default=str))
        return ExitCode.OK
    for name in sorted({*found.probes, *found.broken}):
        if name in found.broken:
            print(f"{name}: BROKEN: {found.broken[name].describe()}")
            continue
        cls = found.probes[name]
        print(f"{name}: {cls.description}")
        reqs = ", ".join(r.kind + (f" {r.name}" if r.name else "") for r in cls.requires)
        if reqs:
            print(f"  requires: {reqs}")
        if cls.expands:
            print(f"  expands over: {', '.join(sorted(cls.expands))}")
        for s in param_specs(cls.Params):
            print(f"  -p {s.name}=<{s.type}>  default {s.default!r}" + (f"  {s.help}" if s.help else ""))
    return ExitCode.OK


def cmd_inventory(args: argparse.Namespace) -> int:
    import json

    from hpcbench.node import collector

    inv = collector.collect()
    if args.format == "json":
        print(json.dumps(inv.as_dict(), indent=1))
    else:
        print("\n".join(collector.summary_lines(inv)))
    return ExitCode.OK


def cmd_run(args: argparse.Namespace, suite: Any = None) -> int:
    from hpcbench.cli import request
    from hpcbench.cli.run import execute
    from hpcbench.engine import config
    from hpcbench.engine import suite as suite_mod
    from hpcbench.probes import registry

    req = request.from_args(args)
    cfg = config.load({"output": req.output, "lock": req.lock_file})
    if suite is None:
        config.check_folders(cfg.suites)
        found = registry.catalog(suite_mod.probe_names(args.suite, cfg.suites.value))
        probe_classes = found.probes
        suite = suite_mod.load(args.suite, probe_classes, found.broken, cfg.suites.value)
    else:
        probe_classes = {c.probe: registry.load(c.probe) for c in suite.checks}
    return execute(suite, probe_classes, req, cfg=cfg)


#: the suites whose limits judge ``hpcbench probe NAME``, the first that runs the probe
PROBE_RULES = ("quick", "gpu-check", "acceptance")


def cmd_probe(args: argparse.Namespace) -> int:
    from hpcbench.engine import config
    from hpcbench.engine import suite as suite_mod
    from hpcbench.probes import registry
    from hpcbench.probes.base import build_params

    cls = registry.load(args.name)
    values = _parse_kv(args.param)
    typed = build_params(cls, values, from_text=True)
    params = {k: getattr(typed, k) for k in values}
    if args.expand != "none" and args.expand not in cls.expands:
        raise ConfigError(f"probe {args.name!r} cannot expand over {args.expand!r}")
    cfg = config.load({"output": args.output, "lock": args.lock_file})
    # the limits of the first bundled suite that runs the probe judge it (quick, else gpu-check for
    # burn and memtest, else acceptance); site suites of those names first
    rules = None
    for name in PROBE_RULES:
        rules = suite_mod.load(name, site=cfg.suites.value)
        if any(c.probe == args.name for c in rules.checks):
            lender = next(c for c in rules.checks if c.probe == args.name)
            if not args.quiet:
                print(
                    f"hpcbench probe {args.name}: judged with the limits of {name}'s check {lender.id}",
                    file=sys.stderr,
                )
            break
    one = suite_mod.single_check(args.name, params, args.timeout, args.expand, rules, typed=typed)
    return cmd_run(args, one)


def cmd_baseline(args: argparse.Namespace) -> int:
    from hpcbench.analysis.baseline_create import create

    if args.from_fleet:
        from hpcbench.analysis.fleet_baseline import create_from_fleet

        if args.records:
            raise ConfigError("give either RECORD... or --from-fleet DIR, not both")
        path = create_from_fleet(
            args.from_fleet,
            args.output,
            name=args.name,
            source=args.source or "fleet-median",
            match=args.match,
            force=args.force,
            suite=args.suite,
        )
        print(f"wrote baseline profile {path}")
        return ExitCode.OK
    if not args.records:
        raise ConfigError("baseline create: give RECORD... or --from-fleet DIR")
    path = create(
        args.records,
        args.output,
        name=args.name,
        source=args.source or "golden-node",
        match=args.match,
        force=args.force,
    )
    print(f"wrote baseline profile {path}")
    if args.site_suite:
        from pathlib import Path

        from hpcbench.analysis import site_suite
        from hpcbench.engine import store

        records = [store.load_data(f) for f in store.find(args.records)]
        print(f"wrote site suite {site_suite.write(records, Path(args.site_suite), args.force)}")
    return ExitCode.OK


def cmd_config(args: argparse.Namespace) -> int:
    import json

    from hpcbench.engine import config

    cfg = config.load()
    if args.format == "json":
        print(json.dumps(cfg.as_dict(), indent=1))
        return ExitCode.OK
    print(f"config file: {cfg.file or f'none ({config.SYSTEM_CONFIG} absent, HPCBENCH_CONFIG unset)'}")
    for s in cfg.settings:
        print(f"{s.name:<10} {s.text()}  ({s.source})")
    return ExitCode.OK


def cmd_schema(args: argparse.Namespace) -> int:
    from hpcbench.engine.validate import schema_text

    sys.stdout.write(schema_text(args.name))
    return ExitCode.OK


def cmd_validate(args: argparse.Namespace) -> int:
    from hpcbench.engine.validate import validate_files

    checked, problems = validate_files(args.files)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        bad = len({line.split(": ", 1)[0] for line in problems})
        print(f"{bad} of {checked} file(s) are not valid hpcbench records", file=sys.stderr)
        return ExitCode.USAGE
    if not checked:
        raise ConfigError(f"no record files in {' '.join(args.files)}")
    print(f"{checked} record(s) valid")
    return ExitCode.OK


def _slurm_check(args: argparse.Namespace) -> int:
    from hpcbench.cli.slurm import cmd_slurm_check

    return cmd_slurm_check(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return ExitCode.USAGE
    handlers = {
        "list": cmd_list,
        "inventory": cmd_inventory,
        "run": cmd_run,
        "probe": cmd_probe,
        "baseline": cmd_baseline,
        "config": cmd_config,
        "schema": cmd_schema,
        "validate": cmd_validate,
    }
    from hpcbench.analysis.commands import HANDLERS

    handlers.update(HANDLERS)
    handlers["slurm-check"] = _slurm_check
    try:
        return int(handlers[args.command](args))
    except ConfigError as exc:
        print(f"hpcbench: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except LockHeld as exc:
        print(f"hpcbench: {exc}", file=sys.stderr)
        return ExitCode.UNKNOWN
    except HpcbenchError as exc:
        print(f"hpcbench: error: {exc}", file=sys.stderr)
        return ExitCode.UNKNOWN
    except KeyboardInterrupt:
        print("hpcbench: interrupted", file=sys.stderr)
        return ExitCode.UNKNOWN
    except BrokenPipeError:
        return ExitCode.OK
