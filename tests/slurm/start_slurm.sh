#!/usr/bin/env bash
# Start a real, throwaway single-node SLURM cluster on this machine (Debian 12
# packages, no systemd), for testing Snakemake's `--executor slurm`.
#
# Usage:  tests/slurm/start_slurm.sh [STATE_DIR]
#   STATE_DIR defaults to $SLURM_HARNESS_DIR, else /tmp/ssmvit-slurm.
#   Then:   export SLURM_CONF=STATE_DIR/etc/slurm.conf
#   Stop:   tests/slurm/stop_slurm.sh [STATE_DIR]
#
# Everything (slurm.conf, munge key/socket, spool dirs, logs, pid files) lives
# under STATE_DIR; nothing under /etc is written. Must run as root (slurmd
# needs it). Idempotent: if the cluster of STATE_DIR is already up and
# answering, it only prints the usage lines (settings below are NOT re-applied:
# stop it first to change them); if it is half up, it is stopped and started
# afresh.
#
# Optional environment:
#   SLURM_HARNESS_PARTITION   partition name               (default: debug)
#   SLURM_HARNESS_CTLD_PORT   slurmctld port               (default: 6817)
#   SLURM_HARNESS_SLURMD_PORT slurmd port                  (default: 6818)
#   SLURM_HARNESS_MEM_MB      node RealMemory in MB        (default: slurmd -C)
#   SLURM_HARNESS_TIMEOUT     seconds to wait for idle     (default: 90)
#   SLURM_HARNESS_GPUS        N > 0 declares N fake GPUs (GRES gpu backed by
#                             /dev/null links) so `--gpus=N` jobs are accepted;
#                             jobs see CUDA_VISIBLE_DEVICES but no real GPU
#                             (default: 0 = `--gpus` requests are rejected)
#   SLURM_HARNESS_GPU_TYPE    a GPU model name for those GPUs (e.g. fake), so
#                             `--gpus=MODEL:N` (Snakemake's gpu_model) works too
#   SLURM_HARNESS_RUN_LINK    1 = point /run/slurm/conf at STATE_DIR/etc (default: 1)
#   SLURM_HARNESS_NO_INSTALL  1 = never call apt-get       (default: unset)
#
# Why /run/slurm/conf: snakemake-executor-plugin-slurm-jobstep 0.6.1 strips
# every SLURM_* variable (SLURM_CONF included) before the srun it runs inside
# the job, so that srun finds no config via SLURM_CONF. SLURM 22.05 clients
# look for SLURM_CONF, then /etc/slurm/slurm.conf, then
# /run/slurm/conf/slurm.conf (the configless-mode cache link). This symlink is
# the only thing written outside STATE_DIR; stop_slurm.sh removes it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${1:-${SLURM_HARNESS_DIR:-/tmp/ssmvit-slurm}}"
PARTITION="${SLURM_HARNESS_PARTITION:-debug}"
CTLD_PORT="${SLURM_HARNESS_CTLD_PORT:-6817}"
SLURMD_PORT="${SLURM_HARNESS_SLURMD_PORT:-6818}"
WAIT_S="${SLURM_HARNESS_TIMEOUT:-90}"
GPUS="${SLURM_HARNESS_GPUS:-0}"
GPU_TYPE="${SLURM_HARNESS_GPU_TYPE:-}"
RUN_LINK="${SLURM_HARNESS_RUN_LINK:-1}"

log() { printf '[start_slurm] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (slurmd needs root)"
case "$STATE" in /*) ;; *) STATE="$(pwd)/$STATE" ;; esac
# munged's unix socket path must stay well below the 108-byte sun_path limit.
[ "${#STATE}" -le 80 ] || die "state dir path too long (munge socket limit): $STATE"

CONF="$STATE/etc/slurm.conf"
MUNGE_DIR="$STATE/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
RUN_DIR="$STATE/run"
LOG_DIR="$STATE/log"

print_usage() {
    cat <<EOF
SLURM test cluster is up (state dir: $STATE).
Use it with:
    export SLURM_CONF=$CONF
    sinfo
    snakemake --profile profiles/slurm ...     # or: --executor slurm ...
Stop it with:
    $HERE/stop_slurm.sh $STATE
EOF
}

pid_alive() {  # pid_alive PIDFILE EXPECTED_COMM
    local f="$1" comm="$2" pid
    [ -s "$f" ] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}

# --- 1. packages ------------------------------------------------------------
need_install=0
for b in munged mungekey slurmctld slurmd sinfo sbatch squeue scontrol; do
    command -v "$b" >/dev/null 2>&1 || need_install=1
done
if [ "$need_install" -eq 1 ]; then
    [ "${SLURM_HARNESS_NO_INSTALL:-}" != 1 ] || die "SLURM/munge binaries missing and SLURM_HARNESS_NO_INSTALL=1"
    t0=$(date +%s)
    export DEBIAN_FRONTEND=noninteractive
    # Another apt/dpkg may be running on this machine: wait for its lock
    # instead of failing at once.
    APT=(apt-get -q -y -o DPkg::Lock::Timeout=900)
    log "installing slurmctld slurmd slurm-client munge via apt-get"
    if ! "${APT[@]}" install --no-install-recommends slurmctld slurmd slurm-client munge >"/tmp/ssmvit-slurm-apt.$$.log" 2>&1; then
        log "install failed, running apt-get update and retrying"
        "${APT[@]}" update >>"/tmp/ssmvit-slurm-apt.$$.log" 2>&1
        "${APT[@]}" install --no-install-recommends slurmctld slurmd slurm-client munge >>"/tmp/ssmvit-slurm-apt.$$.log" 2>&1 \
            || { tail -20 "/tmp/ssmvit-slurm-apt.$$.log" >&2; die "apt-get install failed"; }
    fi
    rm -f "/tmp/ssmvit-slurm-apt.$$.log"
    log "packages installed in $(( $(date +%s) - t0 ))s"
fi

# --- 2. already running? ------------------------------------------------------
if pid_alive "$RUN_DIR/munged.pid" munged \
   && pid_alive "$RUN_DIR/slurmctld.pid" slurmctld \
   && pid_alive "$RUN_DIR/slurmd.pid" slurmd \
   && SLURM_CONF="$CONF" timeout 10 sinfo -h >/dev/null 2>&1; then
    log "already running"
    print_usage
    exit 0
fi
if ls "$RUN_DIR"/*.pid >/dev/null 2>&1; then
    log "stale or partial cluster in $STATE: stopping it first"
    "$HERE/stop_slurm.sh" "$STATE" || true
fi

t_start=$(date +%s)

# --- 3. directories, munge key ------------------------------------------------
mkdir -p "$STATE" "$STATE/etc" "$MUNGE_DIR" "$RUN_DIR" "$LOG_DIR" \
         "$STATE/spool/ctld" "$STATE/spool/slurmd"
# munged insists the socket's directory is world-executable and that nothing
# along the way is group/world-writable without the sticky bit.
chmod 755 "$STATE" "$STATE/etc" "$MUNGE_DIR" "$RUN_DIR"
if [ ! -s "$MUNGE_DIR/munge.key" ]; then
    mungekey --create --bits 1024 --keyfile "$MUNGE_DIR/munge.key"
fi
chmod 600 "$MUNGE_DIR/munge.key"

# --- 4. slurm.conf --------------------------------------------------------------
NODE="$(hostname)"
HW="$(slurmd -C | head -1)"   # NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105
getf() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$HW"; }
CPUS="$(getf CPUs)"; BOARDS="$(getf Boards)"; SPB="$(getf SocketsPerBoard)"
CPS="$(getf CoresPerSocket)"; TPC="$(getf ThreadsPerCore)"
MEM="${SLURM_HARNESS_MEM_MB:-$(getf RealMemory)}"
if [ -z "$CPUS" ] || [ -z "$MEM" ]; then die "could not parse 'slurmd -C': $HW"; fi
# Resolve the node to an address the daemons can reach (loopback if unknown).
ADDR="$(getent ahostsv4 "$NODE" 2>/dev/null | awk 'NR==1{print $1}' || true)"
ADDR="${ADDR:-127.0.0.1}"

: >"$STATE/etc/plugstack.conf"   # keep /etc/slurm/plugstack.conf out of it
GRES_LINE="" NODE_GRES=""
rm -f "$STATE/etc/gres.conf"
if [ "$GPUS" -gt 0 ] 2>/dev/null; then
    # Fake GPUs: counted and scheduled by SLURM, backed by symlinks to /dev/null
    # (slurmd counts a GPU gres only if it has a File= char device; with Count=
    # alone it reports 0 and the node goes INVALID). Nothing is bound or
    # hidden for real. gres.conf is read from slurm.conf's directory.
    mkdir -p "$STATE/dev"
    for i in $(seq 0 $((GPUS - 1))); do ln -sfn /dev/null "$STATE/dev/gpu$i"; done
    GRES_LINE="GresTypes=gpu"
    if [ "$GPUS" -eq 1 ]; then files="$STATE/dev/gpu0"; else files="$STATE/dev/gpu[0-$((GPUS - 1))]"; fi
    if [ -n "$GPU_TYPE" ]; then
        NODE_GRES=" Gres=gpu:${GPU_TYPE}:${GPUS}"
        echo "NodeName=${NODE} Name=gpu Type=${GPU_TYPE} File=${files}" >"$STATE/etc/gres.conf"
    else
        NODE_GRES=" Gres=gpu:${GPUS}"
        echo "NodeName=${NODE} Name=gpu File=${files}" >"$STATE/etc/gres.conf"
    fi
fi
cat >"$CONF" <<EOF
# Generated by tests/slurm/start_slurm.sh -- single-node test cluster.
ClusterName=ssmvit
SlurmctldHost=${NODE}(${ADDR})
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${MUNGE_SOCKET}
StateSaveLocation=${STATE}/spool/ctld
SlurmdSpoolDir=${STATE}/spool/slurmd
SlurmctldPidFile=${RUN_DIR}/slurmctld.pid
SlurmdPidFile=${RUN_DIR}/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=${STATE}/etc/plugstack.conf
# No cgroups inside a container, no accounting database.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Finished jobs stay visible to squeue for MinJobAge seconds; the Snakemake
# SLURM executor only trusts 'squeue' status checks when this is >= 3x its
# initial status-check delay (40 s by default), and long enough that a test
# can still list every job of a workflow when it has finished.
MinJobAge=3600
KillWait=5
InactiveLimit=0
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=60
${GRES_LINE}
NodeName=${NODE} NodeAddr=${ADDR} CPUs=${CPUS} Boards=${BOARDS:-1} SocketsPerBoard=${SPB:-1} CoresPerSocket=${CPS:-$CPUS} ThreadsPerCore=${TPC:-1} RealMemory=${MEM}${NODE_GRES} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF

# --- 4b. /run/slurm/conf link (see header) ---------------------------------------
if [ "$RUN_LINK" = 1 ]; then
    [ ! -e /etc/slurm/slurm.conf ] || log "WARNING: /etc/slurm/slurm.conf exists; srun inside jobs (which loses SLURM_CONF) will use that cluster's config, not this one"
    if [ -L /run/slurm/conf ] || [ ! -e /run/slurm/conf ]; then
        cur="$(readlink /run/slurm/conf 2>/dev/null || true)"
        if [ -n "$cur" ] && [ "$cur" != "$STATE/etc" ] && [ -e "$cur/slurm.conf" ]; then
            log "WARNING: /run/slurm/conf -> $cur (another config); leaving it alone"
        else
            [ -d /run/slurm ] || { mkdir -p /run/slurm && touch "$RUN_DIR/created_run_slurm"; }
            ln -sfn "$STATE/etc" /run/slurm/conf
        fi
    else
        log "WARNING: /run/slurm/conf is a real directory (configless slurmd?); leaving it alone"
    fi
fi

# --- 5. daemons -----------------------------------------------------------------
log "starting munged"
munged --socket "$MUNGE_SOCKET" --key-file "$MUNGE_DIR/munge.key" \
       --pid-file "$RUN_DIR/munged.pid" --log-file "$LOG_DIR/munged.log" \
       --seed-file "$MUNGE_DIR/munged.seed"
for _ in $(seq 50); do [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
munge -S "$MUNGE_SOCKET" -n | unmunge -S "$MUNGE_SOCKET" >/dev/null \
    || die "munge self-test failed, see $LOG_DIR/munged.log"

export SLURM_CONF="$CONF"
log "starting slurmctld"
# -c: start from a clean state (no jobs/nodes remembered from an earlier run)
slurmctld -c -f "$CONF" \
    || { tail -20 "$LOG_DIR/slurmctld.log" >&2; die "slurmctld failed to start"; }
log "starting slurmd"
slurmd -c -f "$CONF" -N "$NODE" \
    || { tail -20 "$LOG_DIR/slurmd.log" >&2; die "slurmd failed to start"; }

# --- 6. wait for the node --------------------------------------------------------
deadline=$(( $(date +%s) + WAIT_S ))
state=""
while :; do
    state="$(timeout 10 sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -1 || true)"
    case "$state" in
        idle|mixed|allocated) break ;;
        down*|drain*|fail*)
            # e.g. after an unclean earlier run; ReturnToService=2 usually
            # covers it but be explicit.
            timeout 10 scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
        log "node $NODE not idle after ${WAIT_S}s (state: '${state:-none}')"
        tail -20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
        exit 1
    fi
    sleep 0.5
done
for d in munged slurmctld slurmd; do
    pid_alive "$RUN_DIR/$d.pid" "$d" || die "$d is not running (no live pid in $RUN_DIR/$d.pid)"
done
log "node $NODE is $state after $(( $(date +%s) - t_start ))s"
sinfo >&2
if ! python3 -c 'import snakemake_executor_plugin_slurm, snakemake_executor_plugin_slurm_jobstep' 2>/dev/null; then
    log "note: the Snakemake SLURM executor is not installed for python3; see tests/slurm/NOTES.md for the pinned pip line"
fi
print_usage
