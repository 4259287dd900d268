#!/bin/sh
# hpcbench as Slurm's HealthCheckProgram or Prolog (slurm.conf):
#   HealthCheckProgram=/usr/local/sbin/hpcbench-healthcheck
#   HealthCheckInterval=300
#   Prolog=/usr/local/sbin/hpcbench-healthcheck          (or one of the two)
# slurmd runs it as root with only SLURMD_NODENAME set (no PATH) and kills a HealthCheckProgram
# after 60 s. The default suite, health, only reads (no load) and ends in well under a second on
# a healthy node; --deadline ends it in time even when a read hangs (a dead NFS mount), with the
# record naming what hung. Point HPCBENCH_SUITE at your site's health suite (a short file that
# includes the bundled one and adds your mounts and daemons: docs/health.md). A longer suite
# (quick, nightly) fits only with HPCBENCH_MAX_AGE, which reuses a recent passing record of it.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HPCBENCH=${HPCBENCH:-/opt/hpcbench/.venv/bin/hpcbench}
SUITE=${HPCBENCH_SUITE:-health}
DEADLINE=${HPCBENCH_DEADLINE-50s}                # empty: no deadline (a suite whose checks' timeouts exceed it)
MAX_AGE=${HPCBENCH_MAX_AGE:-}
OUTPUT=${HPCBENCH_OUTPUT:-/var/lib/hpcbench/results}
LOG=${HPCBENCH_LOG:-/var/log/hpcbench.log}
TEXTFILE_DIR=${HPCBENCH_TEXTFILE_DIR:-/var/lib/prometheus/node-exporter}
set -- --quiet --output "$OUTPUT" --log-file "$LOG" "$@"
if [ -n "$DEADLINE" ]; then
  set -- "$@" --deadline "$DEADLINE"
fi
if [ -n "$MAX_AGE" ]; then
  set -- "$@" --max-age "$MAX_AGE"
fi
if [ -d "$TEXTFILE_DIR" ]; then
  set -- "$@" --prometheus-textfile "$TEXTFILE_DIR"
fi
exec "$HPCBENCH" slurm-check "$SUITE" "$@"
