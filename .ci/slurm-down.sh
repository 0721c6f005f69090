#!/usr/bin/env bash
# Stop what .ci/slurm-up.sh started: cancel the jobs left, then the daemons.
command -v scancel >/dev/null || exit 0
scancel -u "$(id -un)" 2>/dev/null || true
for i in $(seq 30); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
scontrol shutdown 2>/dev/null || true   # slurmctld and both slurmd
f=$(pgrep -x munged) && kill $f || true
