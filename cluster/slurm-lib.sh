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
