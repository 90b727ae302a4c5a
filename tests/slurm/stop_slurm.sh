#!/usr/bin/env bash
# Stop the single-node SLURM test cluster started by start_slurm.sh.
#
# Usage:  tests/slurm/stop_slurm.sh [STATE_DIR]
#   STATE_DIR defaults to $SLURM_HARNESS_DIR, else /tmp/ssmvit-slurm.
#
# Only the processes whose PIDs are in STATE_DIR/run/*.pid are signalled (and
# only if that PID still runs the expected program): slurmd, slurmctld, munged,
# in that order. Jobs still queued/running on this cluster are cancelled first
# through scancel, so no slurmstepd outlives the cluster. Set
# SLURM_HARNESS_PURGE=1 to also delete STATE_DIR afterwards.
set -uo pipefail

STATE="${1:-${SLURM_HARNESS_DIR:-/tmp/ssmvit-slurm}}"
case "$STATE" in /*) ;; *) STATE="$(pwd)/$STATE" ;; esac
RUN_DIR="$STATE/run"
CONF="$STATE/etc/slurm.conf"
WAIT_S="${SLURM_HARNESS_STOP_TIMEOUT:-30}"

log() { printf '[stop_slurm] %s\n' "$*" >&2; }

pid_of() {  # pid_of NAME -> prints pid if pidfile exists and pid runs NAME
    local f="$RUN_DIR/$1.pid" pid
    [ -s "$f" ] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1
    echo "$pid"
}

if [ ! -d "$RUN_DIR" ]; then
    log "no state in $STATE: nothing to stop"
    exit 0
fi

# Cancel this cluster's jobs while slurmctld/slurmd are still up.
if pid_of slurmctld >/dev/null && [ -f "$CONF" ]; then
    jobs="$(SLURM_CONF="$CONF" timeout 10 squeue -h -o '%i' 2>/dev/null | tr '\n' ' ')"
    if [ -n "${jobs// /}" ]; then
        log "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        SLURM_CONF="$CONF" timeout 10 scancel $jobs 2>/dev/null || true
        for _ in $(seq 20); do
            left="$(SLURM_CONF="$CONF" timeout 10 squeue -h -t PD,R,CG -o '%i' 2>/dev/null)"
            [ -z "$left" ] && break
            sleep 0.5
        done
    fi
fi

rc=0
for d in slurmd slurmctld munged; do
    if ! pid="$(pid_of "$d")"; then
        log "$d: not running"
        rm -f "$RUN_DIR/$d.pid"
        continue
    fi
    log "$d: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    stopped=0
    for _ in $(seq $(( WAIT_S * 10 ))); do
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$d" ]; then stopped=1; break; fi
        sleep 0.1
    done
    if [ "$stopped" -eq 0 ]; then
        log "$d: still alive after ${WAIT_S}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$d" ]; then stopped=1; break; fi
            sleep 0.1
        done
    fi
    if [ "$stopped" -eq 1 ]; then
        rm -f "$RUN_DIR/$d.pid"
    else
        log "$d: pid $pid would not die"
        rc=1
    fi
done

# The /run/slurm/conf link start_slurm.sh made, only if it still points here.
if [ "$(readlink /run/slurm/conf 2>/dev/null)" = "$STATE/etc" ]; then
    rm -f /run/slurm/conf
    if [ -e "$RUN_DIR/created_run_slurm" ]; then
        rmdir /run/slurm 2>/dev/null || true
    fi
fi
rm -f "$RUN_DIR/created_run_slurm"

if [ "$rc" -eq 0 ] && [ "${SLURM_HARNESS_PURGE:-}" = 1 ]; then
    rm -rf "$STATE"
    log "removed $STATE"
fi
[ "$rc" -eq 0 ] && log "stopped"
exit "$rc"
