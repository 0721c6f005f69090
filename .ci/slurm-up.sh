#!/usr/bin/env bash
# Start a two-node SLURM cluster on this host, for the tests marked `slurm` (run as root).
#
# Debian's slurmctld/slurmd/munge on loopback: nodes n1 and n2 (one CPU, one fake GPU each) in
# the partitions `gpu` (default) and `batch`, so that job arrays, multi-node srun steps, gres
# requests and requeue run for real. Idempotent: a second call finds the cluster up and returns.
# Fake GPUs are character devices equal to /dev/null (a gres without a device file is refused).
# AuthInfo cred_expire is short because it is also the wait of a requeued job before it restarts.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then echo "slurm-up: needs root (apt-get, daemons)" >&2; exit 1; fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi
H=$(hostname -s)
mkdir -p /run/munge && chown munge:munge /run/munge
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
mkdir -p /var/lib/slurm-fake /var/spool/slurmctld /var/spool/slurmd/n1 /var/spool/slurmd/n2 /var/log/slurm
for i in 1 2; do [ -c /var/lib/slurm-fake/gpu-n$i ] || mknod /var/lib/slurm-fake/gpu-n$i c 1 3; done
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=${H}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CommunicationParameters=NoInAddrAny
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
MinJobAge=600
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName=n1 NodeHostname=${H} NodeAddr=127.0.0.1 Port=17001 CPUs=1 RealMemory=4000 Gres=gpu:1 State=UNKNOWN
NodeName=n2 NodeHostname=${H} NodeAddr=127.0.0.1 Port=17002 CPUs=1 RealMemory=4000 Gres=gpu:1 State=UNKNOWN
PartitionName=gpu Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
PartitionName=batch Nodes=n1,n2 MaxTime=INFINITE State=UP
CONF
printf '%s\n' "NodeName=n1 Name=gpu File=/var/lib/slurm-fake/gpu-n1" \
              "NodeName=n2 Name=gpu File=/var/lib/slurm-fake/gpu-n2" > /etc/slurm/gres.conf
pgrep -x slurmctld >/dev/null || slurmctld
for n in n1 n2; do pgrep -f "slurmd -N $n\$" >/dev/null || slurmd -N $n; done
for i in $(seq 60); do
  [ "$(sinfo -h -p gpu -o %t 2>/dev/null | sort -u)" = idle ] && break; sleep 0.5
done
sinfo
