#!/bin/sh
# The hpcbench DaemonSet's container command (examples/k8s/daemonset.yaml): runs a suite on the
# node every HPCBENCH_INTERVAL seconds (0: once, for a Job), labels the node with the verdict and
# taints it NoSchedule on FAIL; on OK or WARN it removes its own taint, never anyone else's.
#   label hpcbench.io/verdict=OK|WARN|FAIL|UNKNOWN, hpcbench.io/suite=<suite>,
#         hpcbench.io/checked=<UTC time of the run, 20261128T020000Z>
#   taint hpcbench.io/unhealthy=<suite>:NoSchedule   (FAIL only; UNKNOWN leaves the taint as it is)
# Needs NODE_NAME (downward API: spec.nodeName), kubectl, and RBAC to get and patch nodes.
set -u
: "${NODE_NAME:?set NODE_NAME from the downward API (fieldRef spec.nodeName)}"
HPCBENCH=${HPCBENCH:-hpcbench}
SUITE=${HPCBENCH_SUITE:-health}
INTERVAL=${HPCBENCH_INTERVAL:-300}
OUTPUT=${HPCBENCH_OUTPUT:-/var/lib/hpcbench/results}
KEY=hpcbench.io
while :; do
  "$HPCBENCH" run "$SUITE" --quiet --output "$OUTPUT" --log-file "$OUTPUT/hpcbench.log" "$@"
  rc=$?
  case $rc in
    0) verdict=OK ;;
    1) verdict=WARN ;;
    2) verdict=FAIL ;;
    3) verdict=UNKNOWN ;;
    *) echo "hpcbench exited $rc (usage or configuration error); node left as it is" >&2; exit "$rc" ;;
  esac
  kubectl label node "$NODE_NAME" --overwrite \
    "$KEY/verdict=$verdict" "$KEY/suite=$SUITE" "$KEY/checked=$(date -u +%Y%m%dT%H%M%SZ)"
  if [ "$rc" -eq 2 ]; then
    kubectl taint node "$NODE_NAME" --overwrite "$KEY/unhealthy=$SUITE:NoSchedule"
  elif [ "$rc" -le 1 ] && kubectl get node "$NODE_NAME" \
      -o jsonpath='{range .spec.taints[*]}{.key}{"\n"}{end}' | grep -qx "$KEY/unhealthy"; then
    kubectl taint node "$NODE_NAME" "$KEY/unhealthy:NoSchedule-"
  fi
  [ "$INTERVAL" -gt 0 ] || exit "$rc"
  sleep "$INTERVAL"
done
