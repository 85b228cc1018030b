#!/usr/bin/env bash
# Runs one launcher on every worker of a TPU VM pod slice (multi-host, one process per host).
#
#   launch/tpu_vm.sh NAME ZONE "python -m launch.train --config=configs/ddpm/cifar10.py \
#       --workdir=gs://BUCKET/ddpm_cifar10 --config.data.data_dir=gs://BUCKET/tfds"
#
# Every worker runs the same command; the launcher calls jax.distributed.initialize()
# (it detects TPU_WORKER_HOSTNAMES), builds a global mesh over all chips, grain shards the
# data by process, and orbax writes the checkpoint from every process. The workdir and the
# data_dir must be on storage every worker sees (a GCS bucket).
set -euo pipefail
name=${1:?TPU VM name}; zone=${2:?zone}; cmd=${3:?command to run}
repo=${REPO_URL:-}  # optional: a git URL to clone on each worker
setup='set -e; cd ~; '
if [ -n "$repo" ]; then
  setup+="[ -d diffssl_jax ] || git clone $repo diffssl_jax; "
fi
setup+='cd diffssl_jax && bash scripts/bootstrap.sh && .venv/bin/pip install -q "jax[tpu]"'
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "$setup"
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all \
  --command "cd ~/diffssl_jax && .venv/bin/$cmd"
