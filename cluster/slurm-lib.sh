# Shell functions shared by cluster/slurm-up.sh, slurm-down.sh, slurm-2node-up.sh and
# slurm-2node-down.sh (sourced, not run). Daemons are tracked by their pid files only.

# alive PIDFILE COMM: the pid file names a running process called COMM (a recycled pid
# of another program does not count).
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null && grep -qx "$2" "/proc/$(cat "$1")/comm"; }

# stop PIDFILE COMM: TERM, wait up to 10 s, then KILL; removes the pid file.
stop() {
  alive "$1" "$2" || { rm -f "$1"; return 0; }
  local p; p=$(cat "$1"); kill "$p"
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$p" 2>/dev/null && kill -9 "$p"
  rm -f "$1"
}

# install_missing PKG...: apt-get installs the Debian packages that are not there yet.
# (postinst "policy-rc.d denied execution" is expected without systemd and harmless.)
install_missing() {
  dpkg -s "$@" >/dev/null 2>&1 && return 0
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}

# start_munge DIR: munged as the munge user (shared by every Slurm on the host); records
# in DIR/run that this script started it, so that only its own down script stops it.
start_munge() {
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  install -d -o munge -g munge -m 755 /run/munge
  if ! alive /run/munge/munged.pid munged; then
    runuser -u munge -- /usr/sbin/munged
    cp /run/munge/munged.pid "$1/run/munged.started-by-us"
  fi
  munge -n | unmunge >/dev/null
}

# stop_munge DIR: stops munged only if start_munge DIR started it (same pid as recorded).
stop_munge() {
  if [ -s "$1/run/munged.started-by-us" ] && cmp -s "$1/run/munged.started-by-us" /run/munge/munged.pid; then
    stop /run/munge/munged.pid munged
  fi
  rm -f "$1/run/munged.started-by-us"
}

# cancel_jobs DIR: with the controller of DIR up, cancels every job and waits (10 s at
# most) for running ones to end, so that slurmstepds exit cleanly.
cancel_jobs() {
  alive "$1/run/slurmctld.pid" slurmctld || return 0
  local ids; ids=$(squeue -h -o %A 2>/dev/null || true)
  if [ -n "$ids" ]; then
    scancel $ids
    for _ in $(seq 1 50); do [ -z "$(squeue -h -t R,CG 2>/dev/null)" ] && break; sleep 0.2; done
  fi
}

# slurm_conf KEY=VALUE...: prints the slurm.conf of a Slurm whose daemons all run on this
# host (controller on 127.0.0.1), with its state, pid and log files under DIR. What the
# single-node (slurm-up.sh) and two-node (slurm-2node-up.sh) set-ups differ in are keys;
# LINES values are zero or more lines (a trailing newline is optional):
#   cluster=NAME          ClusterName                                   (required)
#   dir=DIR               DIR/state, DIR/run, DIR/log                   (required)
#   host=HOST             SlurmctldHost, `hostname -s`                  (required)
#   nodes=LINES           the NodeName lines                            (required)
#   auth=munge|none       AuthType and CredType                         (munge)
#   port=PORT             SlurmctldPort                                 (Slurm's default)
#   mpi=PLUGIN            MpiDefault                                    (none)
#   accounting=LINES      AccountingStorage*  (accounting_storage/none)
#   scheduling=LINES      after SchedulerParameters, e.g. DependencyParameters=...
#   per_node=0|1          1: one slurmd per node (-N NAME): spool, pid and log file per %n
#   extra=LINES           before GresTypes (TmpFS, PlugStackConfig, ...)
#   gres_types=LINE       GresTypes=gpu, or empty (an empty line)
#   partition=OPTIONS     appended to the partition line (OverSubscribe=FORCE:4)
slurm_conf() {
  local cluster="" dir="" host="" nodes="" auth=munge port="" mpi=none scheduling="" per_node=0 extra=""
  local accounting="AccountingStorageType=accounting_storage/none" gres_types="" partition="" kv v
  for kv in "$@"; do
    case "${kv%%=*}" in
      cluster|dir|host|nodes|auth|port|mpi|accounting|scheduling|per_node|extra|gres_types|partition)
        printf -v "${kv%%=*}" '%s' "${kv#*=}" ;;
      *) echo "slurm_conf: unknown argument: $kv" >&2; return 2 ;;
    esac
  done
  for v in cluster dir host nodes; do [ -n "${!v}" ] || { echo "slurm_conf: $v= is required" >&2; return 2; }; done
  # Optional lines: each LINES value ends in exactly one newline (or is empty), so that
  # the text below reads as the file.
  for v in nodes accounting scheduling extra; do [ -z "${!v}" ] || printf -v "$v" '%s\n' "${!v%$'\n'}"; done
  [ -z "$port" ] || port="SlurmctldPort=$port"$'\n'
  local spool=d files=""; [ "$per_node" = 1 ] && { spool=%n; files=-%n; }
  cat <<EOF
ClusterName=$cluster
SlurmctldHost=$host(127.0.0.1)
${port}SlurmUser=root
AuthType=auth/$auth
CredType=cred/$auth
MpiDefault=$mpi
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
${accounting}JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
${scheduling}SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
ReturnToService=2
MinJobAge=3600
StateSaveLocation=$dir/state/ctld
SlurmdSpoolDir=$dir/state/$spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd$files.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd$files.log
${extra}$gres_types
${nodes}PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP${partition:+ $partition}
EOF
}
