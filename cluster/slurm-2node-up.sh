#!/usr/bin/env bash
# Adapted from the verified shared recipe (../shared/recipes/slurm-2node-up.sh): installs the Slurm packages when
# missing (as cluster/slurm-up.sh does) instead of failing. Used by tests/multinode.rs with cluster/ci-slurm-2node.toml.
# Two-node Slurm on ONE host (Debian 12, slurm 22.05): one slurmctld + two slurmd (-N n1 / -N n2) on 127.0.0.1,
# distinct slurmd ports. Config lives in $D/etc (NOT /etc/slurm); every client needs SLURM_CONF=$D/etc/slurm.conf
# (sbatch exports it into jobs, so srun inside jobs finds it too).
# Needs root; no systemd. Env: SLURM2_DIR (${TMPDIR:-/tmp}/ras-slurm2), FAKE_GPUS_PER_NODE (1; 0 = no GRES),
#   SLURM_AUTH (munge|none), SLURM_CLEAN (1 = wipe state), CTLD_PORT (16817), NODE_PORT_BASE (17000)
set -euo pipefail
D=${SLURM2_DIR:-${TMPDIR:-/tmp}/ras-slurm2}; G=${FAKE_GPUS_PER_NODE:-1}; AUTH=${SLURM_AUTH:-munge}
CP=${CTLD_PORT:-16817}; PB=${NODE_PORT_BASE:-17000}; NODES="n1 n2"
H=$(hostname -s); E=$D/etc; export SLURM_CONF=$E/slurm.conf
. "$(dirname "$(readlink -f "$0")")/slurm-lib.sh"
t0=$(date +%s.%N)

install_missing slurmctld slurmd slurm-client munge
if [ "${SLURM_CLEAN:-0}" = 1 ] && ! alive "$D/run/slurmctld.pid" slurmctld; then rm -rf "$D/state"; fi
mkdir -p "$D"/{state/ctld,run,log,fakegpu,etc}
for n in $NODES; do mkdir -p "$D/state/$n" "$D/tmp/$n"; done

# --- config ---------------------------------------------------------------------------------------
# Each slurmd sees the whole machine; give each node half of the memory, CPUs=1 (reported >= configured is fine).
MEM=$(( $(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p') * 9 / 10 / 2 ))
GRES_TYPES=""; GRES_NODE=""; { echo "AutoDetect=off"; } > $E/gres.conf.new
if [ "$G" -gt 0 ]; then
  GRES_TYPES="GresTypes=gpu"; GRES_NODE="Gres=gpu:$G"
  for n in $NODES; do
    for i in $(seq 0 $((G-1))); do ln -sfn /dev/null "$D/fakegpu/$n-gpu$i"; done   # File= must stat() as char dev
    echo "NodeName=$n Name=gpu File=$D/fakegpu/$n-gpu[0-$((G-1))]" >> $E/gres.conf.new
  done
fi
NODELINES=""; i=0
for n in $NODES; do i=$((i+1))
  NODELINES+="NodeName=$n NodeHostname=$H NodeAddr=127.0.0.1 Port=$((PB+i)) CPUs=1 RealMemory=$MEM $GRES_NODE State=UNKNOWN"$'\n'
done
# per-node TmpFS (the comment goes into slurm.conf too)
EXTRA="# per-node TmpFS: mpi/pmix creates <TmpFS>/spmix_appdir_<uid>_<job>.<step> on every node; with the
# default /tmp both slurmstepds of a step collide (EEXIST) and the step fails to launch
TmpFS=$D/tmp/%n
PlugStackConfig=$E/plugstack.conf"
slurm_conf cluster=ci2 dir="$D" host="$H" auth="$AUTH" port="$CP" per_node=1 extra="$EXTRA" \
  gres_types="$GRES_TYPES" nodes="$NODELINES" > $E/slurm.conf.new
: > $E/plugstack.conf.new
changed=0
for f in slurm.conf gres.conf plugstack.conf; do cmp -s $E/$f.new $E/$f || changed=1; done
if [ $changed = 1 ]; then
  running=0; alive "$D/run/slurmctld.pid" slurmctld && running=1
  for n in $NODES; do alive "$D/run/slurmd-$n.pid" slurmd && running=1; done
  [ $running = 1 ] && "$(dirname "$(readlink -f "$0")")/slurm-2node-down.sh"
fi
for f in slurm.conf gres.conf plugstack.conf; do mv $E/$f.new $E/$f; done

# --- munge (as the munge user; shared with any other slurm on the host) ----------------------------
if [ "$AUTH" = munge ]; then start_munge "$D"; fi

# --- daemons (they daemonize and write their own pid files) -----------------------------------------
alive "$D/run/slurmctld.pid" slurmctld || slurmctld
for n in $NODES; do alive "$D/run/slurmd-$n.pid" slurmd || slurmd -N "$n"; done

# --- wait for both nodes idle -------------------------------------------------------------------------
# A node left drained or down by an earlier test (Slurm drains one on "Kill task failed" when a step's
# processes outlive its kill, e.g. after its slurmd was killed: tests/chaos does that) is resumed: this is
# a test cluster, nothing else is scheduled on it.
want=$(echo $NODES | wc -w)
for _ in $(seq 1 120); do
  st=$(sinfo -h -N -o '%N %T' 2>/dev/null || true)
  for n in $(awk '$2 ~ /^(drain|down)/ {print $1}' <<<"$st"); do scontrol update nodename="$n" state=resume || true; done
  if [ "$(grep -c ' idle$' <<<"$st" || true)" = "$want" ]; then
    printf 'slurm up: %s nodes idle in %.1fs (export SLURM_CONF=%s)\n' "$want" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "nodes did not all become idle:"$'\n'"$st"$'\n'"see $D/log" >&2; scontrol show node | grep -iE 'NodeName|Reason' >&2 || true; exit 1
