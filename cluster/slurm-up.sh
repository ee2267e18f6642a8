#!/usr/bin/env bash
# Single-node Slurm (Debian 12, slurm 22.05) for the coordinator tests (adapted from the verified recipe; MpiDefault=pmix so srun starts MPI ranks).
# Idempotent: re-running with the same settings leaves running daemons alone; changed settings restart them.
# Needs root; no systemd. Env: SLURM_DIR (${TMPDIR:-/tmp}/ras-slurm), FAKE_GPUS (2; 0 = no GRES),
#   SLURM_AUTH (munge|none), WITH_DBD (0|1: mariadb + slurmdbd so sacct works), SLURM_CLEAN (1 = wipe state)
set -euo pipefail
D=${SLURM_DIR:-${TMPDIR:-/tmp}/ras-slurm}; FAKE_GPUS=${FAKE_GPUS:-2}; AUTH=${SLURM_AUTH:-munge}; DBD=${WITH_DBD:-0}
H=$(hostname -s); E=/etc/slurm
. "$(dirname "$(readlink -f "$0")")/slurm-lib.sh"
waitfor() { for _ in $(seq 1 150); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "timeout: $1" >&2; return 1; }

# 1. install (only what is missing); postinst "policy-rc.d denied execution" is expected and harmless
PKGS="slurmctld slurmd slurm-client munge"; [ "$DBD" = 1 ] && PKGS="$PKGS slurmdbd mariadb-server"
install_missing $PKGS
if [ "${SLURM_CLEAN:-0}" = 1 ] && ! alive "$D/run/slurmctld.pid" slurmctld; then rm -rf "$D/state" "$D/mysql"; fi
mkdir -p "$D"/{state/ctld,state/d,run,log,fakegpu}

# 2. config. Addresses pinned to 127.0.0.1 so hostname resolution does not matter; NodeName must be `hostname -s`.
MEM=$(( $(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p') * 9 / 10 ))
GRES_NODE=""; GRES_TYPES=""; : > $E/gres.conf.new
if [ "$FAKE_GPUS" -gt 0 ]; then
  # gres/gpu without File= is dropped by slurmd; File must stat() as a char device -> symlinks to /dev/null
  for i in $(seq 0 $((FAKE_GPUS-1))); do ln -sfn /dev/null "$D/fakegpu/gpu$i"; done
  GRES_NODE="Gres=gpu:$FAKE_GPUS"; GRES_TYPES="GresTypes=gpu"
  printf 'AutoDetect=off\nNodeName=%s Name=gpu File=%s/fakegpu/gpu[0-%d]\n' "$H" "$D" $((FAKE_GPUS-1)) > $E/gres.conf.new
fi
ACCT="AccountingStorageType=accounting_storage/none"
[ "$DBD" = 1 ] && ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=${GRES_TYPES:+gres/gpu}"
slurm_conf cluster=ci dir="$D" host="$H" auth="$AUTH" mpi=pmix accounting="$ACCT" \
  scheduling=DependencyParameters=kill_invalid_depend gres_types="$GRES_TYPES" \
  nodes="NodeName=$H NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$MEM $GRES_NODE State=UNKNOWN" \
  partition=OverSubscribe=FORCE:4 > $E/slurm.conf.new
cat > $E/slurmdbd.conf.new <<EOF
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
AuthType=auth/$AUTH
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$D/run/slurmdbd.pid
LogFile=$D/log/slurmdbd.log
EOF
chmod 600 $E/slurmdbd.conf.new   # slurmdbd refuses a world-readable config
changed=0
for f in slurm.conf gres.conf slurmdbd.conf; do cmp -s $E/$f.new $E/$f || changed=1; done
if [ $changed = 1 ] && { alive "$D/run/slurmctld.pid" slurmctld || alive "$D/run/slurmd.pid" slurmd; }; then
  "$(dirname "$(readlink -f "$0")")/slurm-down.sh"
fi
for f in slurm.conf gres.conf slurmdbd.conf; do mv $E/$f.new $E/$f; done

# 3. munge, as the munge user (key normally created by the package postinst)
if [ "$AUTH" = munge ]; then start_munge "$D"; fi

# 4. optional accounting: mariadb (datadir under $D, socket only, root via unix_socket auth) + slurmdbd
if [ "$DBD" = 1 ]; then
  install -d -o mysql -g mysql "$D/mysql" /run/mysqld
  if ! alive "$D/mysql/mariadbd.pid" mariadbd; then
    [ -d "$D/mysql/mysql" ] || mariadb-install-db --user=mysql --datadir="$D/mysql" \
        --auth-root-authentication-method=socket --skip-test-db > "$D/log/mariadb-install.log" 2>&1
    setsid mariadbd --user=mysql --datadir="$D/mysql" --socket=/run/mysqld/mysqld.sock \
      --pid-file="$D/mysql/mariadbd.pid" --skip-networking --log-error="$D/log/mariadb.err" </dev/null >/dev/null 2>&1 &
    waitfor "mariadb -e 'select 1'"
  fi
  alive "$D/run/slurmdbd.pid" slurmdbd || slurmdbd
  waitfor "sacctmgr -n show cluster"
  sacctmgr -n -P show cluster format=cluster | grep -qx ci || sacctmgr -i add cluster ci >/dev/null
fi

# 5. slurm daemons (they daemonize and write their own pid files)
alive "$D/run/slurmctld.pid" slurmctld || slurmctld
alive "$D/run/slurmd.pid" slurmd || slurmd

# 6. wait for the node to be idle
for _ in $(seq 1 120); do
  st=$(sinfo -h -n "$H" -o %T 2>/dev/null || true)
  [ "$st" = idle ] && { echo "slurm up: node $H idle"; exit 0; }
  case "$st" in *drain*|inval*|down*) scontrol show node "$H" | grep -i reason || true;; esac
  sleep 0.5
done
echo "slurm did not become idle (state=$st); see $D/log" >&2; exit 1
