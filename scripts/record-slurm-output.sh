#!/usr/bin/env bash
# Record the real output of Slurm's commands into tests/data/slurm/, for the pure parsers'
# tests (tests/test_slurmtext.py). Run it against the local Slurm, which it stops and starts
# again once (to record squeue with the controller down):
#
#   eval "$(bash scripts/local-slurm.sh start)" && bash scripts/record-slurm-output.sh
#
# It takes a little over a minute: a job that hits its one-minute time limit is part of it.
# Each file begins with '#' lines: the command, the Slurm version, the date; for a command that
# fails, its exit status too. The rest is the command's stdout (its stderr where it failed).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-tests/data/slurm}
: "${SLURM_CONF:?SLURM_CONF is not set: run eval \"\$(bash scripts/local-slurm.sh start)\" first}"
timeout 5 sinfo >/dev/null || {
    echo "record-slurm-output: Slurm does not answer (sinfo)" >&2
    exit 1
}
mkdir -p "$OUT"
ABOUT="$(sinfo --version) from Debian, one node started by scripts/local-slurm.sh, recorded $(date -u +%F)"
# Bit strings (array task ids) are cut at 64 characters unless this says otherwise; the backend
# sets it too. squeue-truncated.txt records what happens without it.
export SLURM_BITSTR_LEN=0
# The fields the Slurm backend asks squeue for: the name last, so that it may hold a '|'.
FORMAT='%i|%F|%K|%T|%r|%N|%k|%j'
NAME=pbtrun-rec01

header() {
    printf '# $ %s\n# %s\n' "$(printf '%q ' "$@" | sed 's/ $//')" "$ABOUT"
}

# record FILE COMMAND...: the command's stdout; it must succeed. Echoes the stdout too.
record() {
    local file=$OUT/$1 text
    shift
    text=$("$@")
    { header "$@" && printf '%s\n' "$text"; } >"$file"
    printf '%s\n' "$text"
}

# record_error FILE COMMAND...: the command's stderr and exit status; it must fail.
record_error() {
    local file=$OUT/$1 rc=0 text
    shift
    text=$("$@" 2>&1 >/dev/null) || rc=$?
    ((rc != 0)) || {
        echo "record-slurm-output: expected '$*' to fail" >&2
        exit 1
    }
    { header "$@" && printf '# exit status: %d\n%s\n' "$rc" "$text"; } >"$file"
}

state_of() { timeout 10 scontrol show job -o "$1" | grep -o 'JobState=[A-Z_]*' | head -n1 | cut -d= -f2; }

# wait_for JOB STATE [LIMIT_S]
wait_for() {
    local start=$SECONDS
    until [[ $(state_of "$1") == "$2" ]]; do
        ((SECONDS - start < ${3:-30})) || {
            echo "record-slurm-output: job $1 is not $2 after ${3:-30} s" >&2
            exit 1
        }
        sleep 0.5
    done
}

submit() { sbatch --parsable -J "$NAME" -o /dev/null "$@"; }

echo "record-slurm-output: submitting; the time-limited job takes about 65 s" >&2
timeout_job=$(submit --comment=pbtrun:rec01:timeout --time=1 --wrap 'sleep 300')
single=$(record sbatch-single.txt sbatch --parsable -J "$NAME" -o /dev/null --comment=pbtrun:rec01:ok --wrap 'exit 0')
failed=$(submit --comment=pbtrun:rec01:failed --wrap 'exit 3')
finished_array=$(submit --comment=pbtrun:rec01:finished --array=0-3 --wrap 'exit $((SLURM_ARRAY_TASK_ID == 2 ? 5 : 0))')
cancelled=$(submit --comment=pbtrun:rec01:cancelled --wrap 'sleep 300')
held=$(submit --comment=pbtrun:rec01:cancelled-pending --hold --wrap 'sleep 300')
wait_for "$cancelled" RUNNING
scancel "$cancelled" "$held"
wait_for "$cancelled" CANCELLED
wait_for "$single" COMPLETED
wait_for "$failed" FAILED
wait_for "${finished_array}_2" FAILED
wait_for "$timeout_job" TIMEOUT 120

# What is queued and running while the snapshot is taken.
throttled=$(record sbatch-array.txt sbatch --parsable -J "$NAME" -o /dev/null --comment=pbtrun:rec01:throttled \
    --array=0-9%2 --wrap 'sleep 300')
gpu_array=$(submit --comment=pbtrun:rec01:gpus --gres=gpu:4 --array=0-2 --wrap 'sleep 300')
waiting=$(submit --comment=pbtrun:rec01:after --dependency="afterok:$throttled" --wrap true)
odd=$(sbatch --parsable -J 'odd name|with a pipe' -o /dev/null --hold --wrap true)
primes=$(python3 -c "print(','.join(str(i) for i in range(2, 400) if all(i % p for p in range(2, i))))")
sparse=$(submit --comment=pbtrun:rec01:sparse --hold --array="$primes" --wrap true)
wait_for "${throttled}_1" RUNNING
wait_for "${gpu_array}_0" RUNNING

record squeue-sweep.txt squeue -h -t all -o "$FORMAT" >/dev/null
record squeue-array-tasks.txt squeue -h -t all -r -j "$throttled" -o "$FORMAT" >/dev/null
record squeue-truncated.txt env -u SLURM_BITSTR_LEN squeue -h -t all -j "$sparse" -o "$FORMAT" >/dev/null
record scontrol-job-failed-task.txt scontrol show job -o "${finished_array}_2" >/dev/null
record scontrol-job-cancelled.txt scontrol show job -o "$cancelled" >/dev/null
record scontrol-job-timeout.txt scontrol show job -o "$timeout_job" >/dev/null
record scontrol-job-array.txt scontrol show job -o "$finished_array" >/dev/null
record scontrol-job-pending-array.txt scontrol show job -o "$throttled" >/dev/null
record scontrol-config.txt scontrol show config >/dev/null
record_error sbatch-error-partition.txt sbatch --parsable -p nosuchpartition --wrap true
record_error sbatch-error-gpus.txt sbatch --parsable --gres=gpu:5 --wrap true
record_error sbatch-error-array-size.txt sbatch --parsable --array=0-5000 --wrap true
scancel "$throttled" "$gpu_array" "$waiting" "$odd" "$sparse"

# The controller down: squeue fails after its MessageTimeout; the monitor must retry, not fail jobs.
bash scripts/local-slurm.sh stop
record_error squeue-controller-down.txt squeue -h -t all -o "$FORMAT"
bash scripts/local-slurm.sh start >/dev/null
ls -l "$OUT" >&2
