#!/usr/bin/env bash
# A real, single-node Slurm on this machine, for pbtrun's tests and CI (not for production).
#
#   eval "$(bash scripts/local-slurm.sh start)"    # install if missing, start, print the env
#   bash scripts/local-slurm.sh status             # exit 0 if it is running
#   bash scripts/local-slurm.sh stop               # cancel the jobs, stop the daemons
#
# munged, slurmctld and slurmd run without systemd, on 127.0.0.1 only, as root, with every file
# (config, state, spool, logs, pid files, the munge socket) under LOCAL_SLURM_DIR. The node has
# LOCAL_SLURM_CPUS CPUs (overcommitted on purpose, so that array throttles show) and four fake GPUs
# (GRES on device files), so --gres=gpu:N jobs get a real CUDA_VISIBLE_DEVICES. No accounting
# (slurmdbd): sacct is off, as on many clusters; finished jobs stay in squeue/scontrol for an
# hour (MinJobAge) and every end is appended to $LOCAL_SLURM_DIR/jobcomp.txt.
#
# Only `start` writes to stdout, and only the `export` lines; everything else goes to stderr.
#
# Settings (environment): LOCAL_SLURM_DIR (default /tmp/local-slurm), LOCAL_SLURM_PORT (slurmctld;
# slurmd takes the next one; default 6817), LOCAL_SLURM_CPUS (default 8), LOCAL_SLURM_LINK_ETC=1
# (also link /etc/slurm/slurm.conf, for code that scrubs SLURM_CONF from the environment).
set -euo pipefail

DIR=${LOCAL_SLURM_DIR:-/tmp/local-slurm}
PORT=${LOCAL_SLURM_PORT:-6817}
CPUS=${LOCAL_SLURM_CPUS:-8}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
# Daemons in the order they start; stopped in the reverse order.
DAEMONS=(munged slurmctld slurmd)

say() { echo "local-slurm: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# The pid a daemon's pid file names, if that process is alive and is that daemon. A killed daemon
# stays a zombie for a while where PID 1 does not reap at once (kill -0 still succeeds on it), and a
# pid may be reused: so read its state and its command line in /proc.
live_pid() {
    local name=$1 pid state
    [[ -r $DIR/run/$name.pid ]] || return 1
    pid=$(tr -dc '0-9' <"$DIR/run/$name.pid")
    [[ -n $pid && -r /proc/$pid/stat ]] || return 1
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $state && $state != Z && $state != X ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$name" || return 1
    echo "$pid"
}

# Client commands hang for MessageTimeout while slurmctld is down: bound every probe by time.
controller_up() { timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; }

running() {
    local name
    for name in "${DAEMONS[@]}"; do live_pid "$name" >/dev/null || return 1; done
    [[ -r $CONF ]] && controller_up
}

print_env() {
    printf 'export SLURM_CONF=%q\n' "$CONF"
    printf 'export LOCAL_SLURM_DIR=%q\n' "$DIR"
    printf 'export LOCAL_SLURM_JOBCOMP=%q\n' "$DIR/jobcomp.txt"
}

# Wait (at most $1 seconds) until the command after it succeeds.
wait_until() {
    local limit_s=$1 start=$SECONDS
    shift
    until "$@"; do
        ((SECONDS - start < limit_s)) || return 1
        sleep 0.2
    done
}

# Is anything listening on TCP port $1 (any address, IPv4 or IPv6)? Read from /proc, so that
# neither ss nor netstat is needed.
port_taken() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { found = 1 }
        END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

install_missing() {
    local missing=() cmd
    for cmd in munged slurmctld slurmd sbatch; do command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd"); done
    [[ ${#missing[@]} -eq 0 && -r /etc/munge/munge.key ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "not installed (${missing[*]}) and not root: install slurmctld slurmd slurm-client munge"
    command -v apt-get >/dev/null 2>&1 || die "not installed (${missing[*]}) and no apt-get: install Slurm and munge yourself"
    say "installing slurmctld slurmd slurm-client munge"
    # The packages' scripts would start the daemons through invoke-rc.d; a policy-rc.d that
    # answers 101 forbids it. Add one for the install only, where the machine has none.
    local policy=/usr/sbin/policy-rc.d added=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        added=1
    fi
    local rc=0
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                slurmctld slurmd slurm-client munge
    } >&2 || rc=$?
    ((added)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install failed (exit $rc)"
    [[ -r /etc/munge/munge.key ]] || die "/etc/munge/munge.key is missing after installing munge"
}

# Four fake GPUs: character devices with /dev/null's numbers, so that slurmd accepts them and
# jobs get CUDA_VISIBLE_DEVICES. Where mknod is refused (a container without CAP_MKNOD), regular
# files still let GPUs be counted and scheduled, but jobs then get no CUDA_VISIBLE_DEVICES.
make_gpus() {
    local i
    mkdir -p "$DIR/dev"
    for i in 0 1 2 3; do
        [[ -c $DIR/dev/nvidia$i ]] && continue
        rm -f "$DIR/dev/nvidia$i"
        if ! mknod -m 0666 "$DIR/dev/nvidia$i" c 1 3 2>/dev/null; then
            say "mknod refused: fake GPUs are regular files (jobs will get no CUDA_VISIBLE_DEVICES)"
            : >"$DIR/dev/nvidia$i"
        fi
    done
}

write_config() {
    local memory_mb
    # RealMemory as slurmd measures it, so that --mem is checked against what the node reports.
    memory_mb=$(slurmd -C 2>/dev/null | tr ' ' '\n' | sed -n 's/^RealMemory=//p' | head -n1)
    memory_mb=${memory_mb:-1024}
    cat >"$CONF" <<CONF
# Written by pbtrun's scripts/local-slurm.sh: one node on 127.0.0.1, for tests. Do not edit.
ClusterName=localslurm
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long plus a second before it runs again (default 120).
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No systemd and no cgroups here.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Start batch jobs on the next tick instead of 3 s later, and pass often.
SchedulerParameters=batch_sched_delay=0,sched_interval=5,bf_interval=5
# In 22.05 this belongs here; under SchedulerParameters it is silently ignored.
DependencyParameters=kill_invalid_depend
KillWait=2
OverTimeLimit=0
# Finished jobs stay visible to squeue and scontrol for an hour (there is no sacct).
MinJobAge=3600
MailProg=/bin/true
ReturnToService=2
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
GresTypes=gpu
# The node's CPUs come from this file, not from the hardware (overcommitted on purpose).
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$memory_mb Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
    cat >"$DIR/gres.conf" <<CONF
AutoDetect=off
NodeName=localhost Name=gpu File=$DIR/dev/nvidia[0-3]
CONF
}

start_munged() {
    # munged refuses a socket directory that others cannot traverse.
    mkdir -p "$DIR/munge"
    chown munge:munge "$DIR/munge"
    chmod 0755 "$DIR/munge"
    : >"$DIR/run/munged.pid"
    chown munge:munge "$DIR/run/munged.pid"
    runuser -u munge -- munged --socket="$DIR/munge/munge.socket" --pid-file="$DIR/run/munged.pid" \
        --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" >&2 ||
        die "munged did not start: see $DIR/munge/munged.log"
    wait_until 5 test -S "$DIR/munge/munge.socket" || die "munged's socket did not appear"
}

idle() { timeout 5 sinfo -h -N -n localhost -o '%t' 2>/dev/null | grep -qx 'idle'; }

warm_up() {
    # The scheduler's first pass runs a few seconds after slurmctld starts: pay for it here,
    # once, rather than in the first test.
    local id
    id=$(timeout 10 sbatch --parsable -J local-slurm-warm-up -o /dev/null --wrap true) || die "the warm-up sbatch failed"
    id=${id%%;*}
    wait_until 30 sh -c "timeout 5 scontrol show job -o $id 2>/dev/null | grep -q 'JobState=COMPLETED'" ||
        die "the warm-up job $id did not complete within 30 s: see $DIR/log/"
}

start() {
    if running; then
        print_env
        return 0
    fi
    install_missing
    # Whatever is left of an earlier run (a daemon that died, a half start) goes first.
    stop_daemons quiet
    local port
    for port in "$PORT" $((PORT + 1)); do
        port_taken "$port" && die "TCP port $port is taken by another program: stop it, or set LOCAL_SLURM_PORT to a free pair of ports"
    done
    mkdir -p "$DIR"/{state,spool,log,run}
    make_gpus
    write_config
    if [[ ${LOCAL_SLURM_LINK_ETC:-0} == 1 ]]; then
        mkdir -p /etc/slurm
        ln -sfn "$CONF" /etc/slurm/slurm.conf
        ln -sfn "$DIR/gres.conf" /etc/slurm/gres.conf
    fi
    start_munged
    # slurmctld first: a slurmd that starts while the controller is down backs off for minutes
    # and may then hang on SIGTERM.
    slurmctld -f "$CONF" >&2 || die "slurmctld did not start: see $DIR/log/slurmctld.log"
    wait_until 20 controller_up || die "slurmctld does not answer: see $DIR/log/slurmctld.log"
    slurmd -f "$CONF" -N localhost >&2 || die "slurmd did not start: see $DIR/log/slurmd.log"
    wait_until 20 idle || die "the node did not become idle: see $DIR/log/slurmd.log and slurmctld.log"
    warm_up
    say "running (config $CONF); stop it with: bash scripts/local-slurm.sh stop"
    print_env
}

# SIGTERM to each daemon (reverse order), SIGKILL to any still alive 10 s later.
stop_daemons() {
    local name pid pids=() i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        name=${DAEMONS[i]}
        pid=$(live_pid "$name") || continue
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$name:$pid")
    done
    local start=$SECONDS entry
    for entry in "${pids[@]}"; do
        name=${entry%%:*}
        until ! live_pid "$name" >/dev/null; do
            if ((SECONDS - start >= 10)); then
                [[ ${1:-} == quiet ]] || say "$name did not stop on SIGTERM: SIGKILL"
                kill -KILL "${entry#*:}" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
    done
    rm -f "$DIR"/run/*.pid
}

stop() {
    if [[ -r $CONF ]] && live_pid slurmctld >/dev/null && controller_up; then
        local ids
        ids=$(timeout 5 squeue -h -t PENDING,RUNNING,SUSPENDED,REQUEUED -o '%A' 2>/dev/null | sort -u) || true
        if [[ -n $ids ]]; then
            # shellcheck disable=SC2086 # one argument per job id
            timeout 10 scancel $ids 2>/dev/null || true
            wait_until 10 sh -c "[ -z \"\$(timeout 5 squeue -h -t RUNNING,COMPLETING -o %A)\" ]" || true
        fi
    fi
    stop_daemons
    say "stopped"
}

status() {
    if running; then
        say "running (config $CONF)"
        return 0
    fi
    say "not running"
    return 1
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: bash scripts/local-slurm.sh start|stop|status" >&2
    exit 2
    ;;
esac
