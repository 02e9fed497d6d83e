#!/bin/bash
# Stop the daemons .ci/slurm-up.sh started, by PID, newest first (never by name).
SLURM_CI_DIR=${SLURM_CI_DIR:-${TMPDIR:-/tmp}/slurm-ci}
[ -f "$SLURM_CI_DIR/pids" ] || exit 0
scancel --user=root 2>/dev/null || true
tac "$SLURM_CI_DIR/pids" | while read -r name pid; do
  kill "$pid" 2>/dev/null && echo "stopped $name ($pid)"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done
rm -f "$SLURM_CI_DIR/pids"
