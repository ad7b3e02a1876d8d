#!/usr/bin/env bash
# A single-node Slurm (munge, slurmctld, slurmd) for the Slurm launcher test.
#   .ci/slurm.sh start   install if missing, configure, start, wait until idle
#   .ci/slurm.sh stop    stop the daemons this script started (by pid)
# Needs root and Debian's slurm-wlm and munge. State lives in $STATE.
set -euo pipefail
STATE=${EMCEE_IPP_SLURM_STATE:-/tmp/emcee_ipp_slurm}
CONF=/etc/slurm/slurm.conf

start() {
  [ "$(id -u)" = 0 ] || { echo "slurm.sh: needs root" >&2; exit 1; }
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge
  fi
  rm -rf "$STATE"  # fresh state: no jobs or cluster name from an earlier run
  mkdir -p "$STATE/ctld" "$STATE/d" /etc/slurm /var/log/slurm /run/munge
  chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
  local host; host=$(hostname -s)
  cat > "$CONF" <<CONF
ClusterName=emcee_ipp
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmctldPidFile=$STATE/slurmctld.daemon.pid
SlurmdPidFile=$STATE/slurmd.daemon.pid
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  if ! munge -n >/dev/null 2>&1; then  # started here, so stopped here
    before=$(pgrep -x munged || true)
    su -s /bin/sh munge -c munged
    sleep 1
    # only the pids that were not there before (munged forks while daemonizing)
    pgrep -x munged | grep -vxF -e "${before:-none}" > "$STATE/munged.pid" || true
  fi
  slurmctld -D >"$STATE/slurmctld.out" 2>&1 & echo $! > "$STATE/slurmctld.pid"
  sleep 1
  slurmd -D >"$STATE/slurmd.out" 2>&1 & echo $! > "$STATE/slurmd.pid"
  for _ in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -q idle && { echo "slurm.sh: Slurm is up"; return 0; }
    sleep 0.5
  done
  echo "slurm.sh: Slurm did not come up; see $STATE/*.out" >&2
  stop
  return 1
}

stop() {
  for name in slurmd slurmctld munged; do
    # shellcheck disable=SC2046  # one pid per line (munged forks while daemonizing)
    [ -f "$STATE/$name.pid" ] && kill $(cat "$STATE/$name.pid") 2>/dev/null || true
    rm -f "$STATE/$name.pid"
  done
}

"${1:?usage: slurm.sh start|stop}"
