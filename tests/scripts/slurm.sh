#!/usr/bin/env bash
# Sharded hudd on a real Slurm: installs Debian's slurm-wlm and munge when they are missing, starts a
# single-node cluster on this machine (munged, slurmctld, slurmd), submits
# examples/slurm/hudd-shard.sbatch as 2-task job arrays for evaluate, heatmaps and assign, waits,
# merges (`hudd merge`), and checks that every merged file equals the unsharded run's, byte for
# byte. Needs root (it writes /etc/slurm/slurm.conf and starts the daemons); CI runs it.
#
#   tests/scripts/slurm.sh [HUDD]      HUDD: the binary (default: target/debug/hudd, built if missing)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
hudd=${1:-$root/target/debug/hudd}
[ -x "$hudd" ] || cargo build -p hudd-cli
hudd=$(realpath "$hudd")
[ "$(id -u)" = 0 ] || { echo "slurm.sh: run as root (it configures and starts Slurm)" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

work=$(mktemp -d /tmp/hudd-slurm.XXXXXX)
cleanup() {
  scancel --user=root >/dev/null 2>&1 || true
  pkill -x slurmd >/dev/null 2>&1 || true
  pkill -x slurmctld >/dev/null 2>&1 || true
  pkill -x munged >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# ---- a single-node cluster -------------------------------------------------------------------
[ -s /etc/munge/munge.key ] || { mungekey --create --force; chown munge:munge /etc/munge/munge.key; }
mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
node=$(hostname -s)
mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=hudd-test
SlurmctldHost=$node
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
NodeName=$node NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=hudd Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break
  sleep 1
done
sinfo -h -o '%P %T %C' || { tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log; exit 1; }

# ---- the workload: the Fashion-MNIST fixture -------------------------------------------------
data=$root/tests/fixtures/fmnist
model=$root/models/fashion-mnist/fmnist_cnn.onnx
config=$root/models/fashion-mnist/hudd.toml
sbatch_script=$root/examples/slurm/hudd-shard.sbatch
cd "$work"
run_array() { # STAGE ARGS…: one 2-task array, waited for
  sbatch --wait --array=0-1 --cpus-per-task=1 --export=ALL,HUDD="$hudd" "$sbatch_script" "$@" >/dev/null || {
    cat hudd-shard-*.out >&2
    exit 1
  }
}
"$hudd" analyze -m "$model" -c "$config" -d "$data" -o run -q --batch-size 16 >/dev/null
"$hudd" evaluate -m "$model" -c "$config" -d "$data" -o whole -q --batch-size 16 >/dev/null
"$hudd" heatmaps -m "$model" -c "$config" -i "$data/test" -o whole-h -q --batch-size 16 >/dev/null
"$hudd" assign --run run -q --batch-size 16 >/dev/null
cp -r run/unsafe whole-unsafe
rm -rf run/unsafe

run_array evaluate -m "$model" -c "$config" -d "$data" -o sharded --batch-size 16
run_array heatmaps -m "$model" -c "$config" -i "$data/test" -o sharded-h --batch-size 16
run_array assign --run run --batch-size 16
ls sharded/shards sharded-h/shards run/shards
"$hudd" merge sharded
"$hudd" merge sharded-h
"$hudd" merge run

status=0
compare() { # WHOLE SHARDED
  if diff -r --exclude=shards "$1" "$2" >/dev/null; then
    echo "identical: $2 ($(find "$2" -path '*/shards' -prune -o -type f -print | wc -l) files)"
  else
    diff -rq --exclude=shards "$1" "$2" || true
    status=1
  fi
}
compare whole/results sharded/results
compare whole-h sharded-h
compare whole-unsafe run/unsafe
[ "$status" = 0 ] && echo "slurm: sharded runs merged into the unsharded bytes"
exit "$status"
