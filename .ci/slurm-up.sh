#!/bin/bash
# Bring up a single-node SLURM (Debian 12 packages) on this host, as root, without systemd.
# Recipe and gotchas: docs/cluster.md. Daemon PIDs go to $SLURM_CI_DIR/pids;
# .ci/slurm-down.sh stops exactly those. Exit status 0 only when the node is idle.
set -euo pipefail
SLURM_CI_DIR=${SLURM_CI_DIR:-${TMPDIR:-/tmp}/slurm-ci}
mkdir -p "$SLURM_CI_DIR"
if [ "$(id -u)" != 0 ]; then echo "slurm-up: needs root (apt-get, daemons)" >&2; exit 1; fi
if [ -s "$SLURM_CI_DIR/pids" ]; then echo "slurm-up: already up (see $SLURM_CI_DIR/pids)"; sinfo; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

H=$(hostname -s)
mkdir -p /etc/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$H
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# requeued jobs wait cred_expire+1 s before they may start again (default 120)
AuthInfo=cred_expire=10
MailProg=/bin/true
StateSaveLocation=/var/spool/slurm/ctld
SlurmdSpoolDir=/var/spool/slurm/d
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
# start pending/requeued jobs within ~2 s (defaults 30/60 s)
SchedulerParameters=bf_interval=2,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=30
MinJobAge=300
Waittime=0
NodeName=$H CPUs=$(nproc) RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
rm -rf /var/spool/slurm
mkdir -p /var/spool/slurm/ctld /var/spool/slurm/d /var/log/slurm /run/slurm /run/munge
chown munge:munge /run/munge
: > "$SLURM_CI_DIR/pids"
# the Debian postinst created /etc/munge/munge.key
runuser -u munge -- /usr/sbin/munged -F > "$SLURM_CI_DIR/munged.out" 2>&1 &
echo "munged $!" >> "$SLURM_CI_DIR/pids"
for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
munge -n | unmunge > /dev/null
/usr/sbin/slurmctld -D -i > "$SLURM_CI_DIR/slurmctld.out" 2>&1 &
echo "slurmctld $!" >> "$SLURM_CI_DIR/pids"
/usr/sbin/slurmd -D > "$SLURM_CI_DIR/slurmd.out" 2>&1 &
echo "slurmd $!" >> "$SLURM_CI_DIR/pids"
for _ in $(seq 150); do
  [ "$(sinfo -h -N -o '%T' 2>/dev/null || true)" = idle ] && break; sleep 0.2
done
sinfo
[ "$(sinfo -h -N -o '%T' 2>/dev/null || true)" = idle ] || { echo "slurm-up: node did not become idle" >&2; exit 1; }
