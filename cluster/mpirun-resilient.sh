#!/usr/bin/env bash
# `mpirun ... stride train` that continues on the surviving hosts after a host dies or its link is cut
# (docs/cluster.md, "Failures"):
#   cluster/mpirun-resilient.sh HOSTFILE [MPIRUN OPTIONS] -- stride train ... --out RUN_DIR ...
# HOSTFILE: OpenMPI's host file ("node1 slots=2" lines). The script owns -np, --hostfile and the mapping: it
# starts one process per slot. When mpirun fails, every host is probed by starting `hostname` on it through
# mpirun (the same path the job takes: remote shell, orted, the out-of-band connection back); the hosts that
# answer within PROBE_SECONDS (default 30) are kept and the run is relaunched on them with
# `--resume RUN_DIR`, from the newest checkpoint, up to MAX_RESTARTS times (default 3). stride's result does
# not depend on the number of processes, so the continued run ends bitwise as an uninterrupted one.
# Each restart is logged ("mpirun-resilient: restart 1 of 3 ...") with the step it resumes from and the
# hosts lost. A usage error (stride's exit status 2) and a SIGTERM/SIGINT to this script are not retried.
#
# Without these settings mpirun waits about 8 minutes (or forever, after an MPI_Abort) for a daemon behind a
# cut link; they are passed to mpirun and its daemons (--mca), and may be overridden from the environment:
#   KEEPALIVE_TIME=20 KEEPALIVE_INTERVAL=5 KEEPALIVE_PROBES=3   oob_tcp_keepalive_*: a silent daemon is lost
#                                                               after about TIME + INTERVAL x PROBES seconds
# Give stride a --comm-timeout above that (its default, 300 s, is): an MPI_Abort sent towards a cut host
# stops the keepalive of that connection (unacknowledged data), and mpirun then waits for TCP's retransmission
# limit, about 15 minutes. Measured on the testbed: docs/cluster.md, "Failures".
set -uo pipefail

usage() { echo "usage: $0 HOSTFILE [MPIRUN OPTIONS] -- stride train ... --out RUN_DIR ..." >&2; exit 2; }
[ $# -ge 3 ] || usage
hostfile=$1
shift
[ -r "$hostfile" ] || { echo "mpirun-resilient: cannot read the host file $hostfile" >&2; exit 2; }
mpirun_opts=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do mpirun_opts+=("$1"); shift; done
[ $# -ge 2 ] || usage
shift
command=("$@")

MAX_RESTARTS=${MAX_RESTARTS:-3}
PROBE_SECONDS=${PROBE_SECONDS:-30}
MPIRUN=${MPIRUN:-mpirun}
keepalive=(--mca oob_tcp_keepalive_time "${KEEPALIVE_TIME:-20}" --mca oob_tcp_keepalive_intvl "${KEEPALIVE_INTERVAL:-5}"
           --mca oob_tcp_keepalive_probes "${KEEPALIVE_PROBES:-3}")

log() { echo "mpirun-resilient: $(date -u +%H:%M:%S): $*" >&2; }

# The value of the last `--NAME V` or `--NAME=V` of the stride command ($2 when absent): a later flag wins.
flag() {
  local name=$1 value=$2 i
  for ((i = 0; i < ${#command[@]}; i++)); do
    case "${command[$i]}" in
      "--$name") value=${command[$((i + 1))]:-} ;;
      "--$name="*) value=${command[$i]#--$name=} ;;
    esac
  done
  echo "$value"
}
run_dir=$(flag out "")
[ -n "$run_dir" ] || { [ -d "$(flag resume "")" ] && run_dir=$(flag resume ""); }  # stride train --resume RUN_DIR
[ -n "$run_dir" ] || { echo "mpirun-resilient: give stride train --out RUN_DIR or --resume RUN_DIR (a restart resumes from it)" >&2; exit 2; }
# Micro-batches per step (stride's defaults: batch 64; micro-batch 16 when 16 divides the batch, else the
# batch): every process needs at least one.
# A flag the command does not give is the run_config's of the newest checkpoint (a resumed run; the JSON is
# plain text in the file).
stored() { grep -aoE "\"$1\":[0-9]+" "$run_dir/checkpoints/$(cat "$run_dir/checkpoints/latest" 2>/dev/null)" 2>/dev/null | head -n 1 | cut -d: -f2; }
batch=$(flag batch "$(stored batch)")
batch=${batch:-64}
micro=$(flag micro-batch "$(stored micro_batch)")
[ "$micro" -gt 0 ] 2>/dev/null || { [ $((batch % 16)) -eq 0 ] && micro=16 || micro=$batch; }
micro_batches=$((batch / micro))

# A restart runs `stride train --resume RUN_DIR` with only the flags that are this launch's own: every other
# setting (model, data, batch, schedule, cadence, ...) is in the checkpoint's run_config, and stride compares
# a given flag with it. --threads, --progress, --no-progress, --comm-timeout, --comm-progress and --max-memory
# are not stored (stride's `train --help`, --resume); --stop-after-step and --overwrite belong to the first
# launch, and an earlier --resume names this run's start, not its continuation.
resume_command=()
for ((i = 0; i < ${#command[@]}; i++)); do
  case "${command[$i]}" in
    --*) break ;;
    *) resume_command+=("${command[$i]}") ;;  # the program and its command (stride train)
  esac
done
resume_command+=(--resume "$run_dir")
for ((; i < ${#command[@]}; i++)); do
  case "${command[$i]}" in
    --threads | --progress | --comm-timeout | --comm-progress | --max-memory)
      resume_command+=("${command[$i]}" "${command[$((i + 1))]:-}"); i=$((i + 1)) ;;
    --threads=* | --progress=* | --comm-timeout=* | --comm-progress=* | --max-memory=* | --no-progress)
      resume_command+=("${command[$i]}") ;;
  esac
done

# Hosts and slots of the host file (comments and blank lines skipped; no slots= means 1).
hosts=()
slots=()
while read -r host rest; do
  [ -z "$host" ] || [ "${host#\#}" != "$host" ] && continue
  s=$(sed -n 's/.*slots=\([0-9]*\).*/\1/p' <<< "$rest")
  hosts+=("$host")
  slots+=("${s:-1}")
done < "$hostfile"
[ ${#hosts[@]} -gt 0 ] || { echo "mpirun-resilient: no hosts in $hostfile" >&2; exit 2; }
work=$(mktemp -d)
mpirun_pid=
stopping=0
on_signal() {
  stopping=1
  [ -n "$mpirun_pid" ] && kill -TERM "$mpirun_pid" 2>/dev/null
}
trap on_signal TERM INT
trap 'rm -rf "$work"' EXIT

probe() {  # probe HOST: whether mpirun can start a process there and hear back from it in time
  timeout -s KILL "$PROBE_SECONDS" "$MPIRUN" "${mpirun_opts[@]}" "${keepalive[@]}" --mca orte_startup_timeout \
    "$PROBE_SECONDS" --host "$1" -np 1 hostname > /dev/null 2>&1
}

newest_step() {  # the global step of RUN_DIR's newest checkpoint, empty when there is none
  local latest
  latest=$(cat "$run_dir/checkpoints/latest" 2>/dev/null) || return 0
  latest=${latest#step-}
  latest=${latest%.h5}
  echo $((10#$latest))
}

restart=0
status=0
while :; do
  # Processes: one per slot, but no more than the step's micro-batches: then fewer per host.
  total=0
  for s in "${slots[@]}"; do total=$((total + s)); done
  per_host=()
  if [ "$total" -le "$micro_batches" ]; then
    per_host=("${slots[@]}")
  else
    left=$micro_batches
    for i in "${!hosts[@]}"; do per_host+=(0); done
    while [ "$left" -gt 0 ]; do  # round robin over the hosts, within their slots
      for i in "${!hosts[@]}"; do
        [ "$left" -gt 0 ] && [ "${per_host[$i]}" -lt "${slots[$i]}" ] && per_host[$i]=$((per_host[i] + 1)) && left=$((left - 1))
      done
    done
    log "$total slots but a step has $micro_batches micro-batches (--batch $batch, --micro-batch $micro): every" \
        "process needs one, so $micro_batches processes (${per_host[*]} per host)"
  fi
  : > "$work/hostfile"
  np=0
  ranks_of=()  # the ranks mpirun places on each host (by slot, in host file order), to name them when it is lost
  for i in "${!hosts[@]}"; do
    [ "${per_host[$i]}" -gt 0 ] && echo "${hosts[$i]} slots=${per_host[$i]}" >> "$work/hostfile"
    ranks_of+=("rank$([ "${per_host[$i]}" -gt 1 ] && echo "s $np-$((np + per_host[i] - 1))" || echo " $np")")
    np=$((np + per_host[i]))
  done
  args=("${command[@]}")
  # Continue from the newest checkpoint: its run_config holds the run's settings.
  [ "$restart" -gt 0 ] && [ -n "$(newest_step)" ] && args=("${resume_command[@]}")
  "$MPIRUN" "${mpirun_opts[@]}" "${keepalive[@]}" --hostfile "$work/hostfile" -np "$np" "${args[@]}" &
  mpirun_pid=$!
  wait "$mpirun_pid"
  status=$?
  while kill -0 "$mpirun_pid" 2>/dev/null; do wait "$mpirun_pid"; status=$?; done  # a signal interrupted wait
  mpirun_pid=
  [ "$status" -eq 0 ] && exit 0
  resume_line="$0 $hostfile ${mpirun_opts[*]} -- ${resume_command[*]}"
  if [ "$stopping" -eq 1 ]; then
    log "stopped by a signal (mpirun exited with status $status); resume with: $resume_line"
    exit "$status"
  fi
  if [ "$status" -eq 2 ]; then
    log "stride reported a usage error (status 2): not restarting"
    exit "$status"
  fi
  if [ "$restart" -ge "$MAX_RESTARTS" ]; then
    step=$(newest_step)
    log "mpirun failed with status $status and the $MAX_RESTARTS restarts (MAX_RESTARTS) are used up; stopping." \
        "The newest checkpoint is step ${step:-none (none yet)}; resume with: $resume_line"
    exit "$status"
  fi
  # Which hosts still answer: probed at once, each within PROBE_SECONDS.
  for i in "${!hosts[@]}"; do (probe "${hosts[$i]}" && touch "$work/up.$i") & done
  wait
  kept_hosts=()
  kept_slots=()
  lost=()
  for i in "${!hosts[@]}"; do
    if [ -e "$work/up.$i" ]; then kept_hosts+=("${hosts[$i]}"); kept_slots+=("${slots[$i]}"); else lost+=("${hosts[$i]} (${ranks_of[$i]})"); fi
    rm -f "$work/up.$i"
  done
  if [ ${#kept_hosts[@]} -eq 0 ]; then
    log "mpirun failed with status $status and no host answers the probe; stopping. Resume with: $resume_line"
    exit "$status"
  fi
  hosts=("${kept_hosts[@]}")
  slots=("${kept_slots[@]}")
  restart=$((restart + 1))
  step=$(newest_step)
  from="step ${step:-0} ($run_dir/checkpoints/$(cat "$run_dir/checkpoints/latest" 2>/dev/null))"
  [ -n "$step" ] || from="the start (no checkpoint yet)"
  log "restart $restart of $MAX_RESTARTS: mpirun exited with status $status; hosts lost: ${lost[*]:-none};" \
      "resuming from $from on ${#hosts[@]} hosts: ${hosts[*]}"
done
