#!/usr/bin/env bash
# Trains on a Cloud TPU VM (a single host or a multi-host pod slice) with the workdir in a
# GCS bucket. Every worker runs the same command, one process per host: the launcher calls
# jax.distributed.initialize() (it detects the TPU workers), builds a global mesh over all
# chips, grain shards the data by process, orbax writes the checkpoint from every process,
# and process 0 alone writes config.json, metrics.jsonl, the TensorBoard events and the
# figures. The workdir (and a tfds data_dir) must be on storage every worker sees: a bucket.
#
#   launch/tpu_vm.sh install NAME ZONE [PIP_SPEC]   # on every worker, once per VM
#   launch/tpu_vm.sh run NAME ZONE "COMMAND"        # on every worker, in the venv
#
# The recipe, end to end (from a workstation with gcloud authenticated):
#
#   1. A bucket in the TPU's region; the TPU VM's service account needs
#      roles/storage.objectAdmin on it:
#        gcloud storage buckets create gs://BUCKET --location=REGION
#   2. A TPU VM whose software version has Python >= 3.12 (the library's floor):
#        gcloud compute tpus tpu-vm create NAME --zone=ZONE --accelerator-type=v5litepod-16 \
#            --version=TPU_SOFTWARE_VERSION
#   3. Install on every worker: the `tpu` extra brings jax[tpu] and gcsfs (how etils epath,
#      and so every file the library writes, reaches gs://). PIP_SPEC defaults to
#      'diffssl_jax[tpu]' from the package index:
#        launch/tpu_vm.sh install NAME ZONE
#      or install a wheel built from a checkout (`pip wheel --no-deps -w dist .`):
#        gcloud compute tpus tpu-vm scp dist/diffssl_jax-VERSION-py3-none-any.whl NAME: \
#            --zone=ZONE --worker=all
#        launch/tpu_vm.sh install NAME ZONE './diffssl_jax-VERSION-py3-none-any.whl[tpu]'
#   4. Train (configs by name or path; --config.x=y overrides any key):
#        launch/tpu_vm.sh run NAME ZONE "diffssl-train --config=ddpm/cifar10 \
#            --workdir=gs://BUCKET/runs/ddpm_cifar10 --config.data.data_dir=gs://BUCKET/tfds"
#      which is
#        gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=all --command \
#            "source ~/diffssl_venv/bin/activate; diffssl-train --config=... --workdir=gs://..."
#   5. Watch from anywhere with read access (TensorBoard's fast loader reads gs:// itself;
#      authenticate with `gcloud auth application-default login`):
#        tensorboard --logdir gs://BUCKET/runs
#   6. Resume after a preemption or a crash: run step 4 again, unchanged. The run restarts
#      from the last finalised checkpoint (orbax marks one finished with commit_success.txt
#      objects, so a half-written step is never used); a finished run is not redone.
#   7. Use the results: anywhere with gcsfs, `diffssl_jax.load_params("gs://BUCKET/runs/...")`
#      reads the parameters directly; or copy the workdir back:
#        gcloud storage cp -r gs://BUCKET/runs/ddpm_cifar10 ./runs/
#
# Delete the TPU VM when done (gcloud compute tpus tpu-vm delete NAME --zone=ZONE); the
# bucket keeps everything.
set -euo pipefail
action=${1:?install or run}; name=${2:?TPU VM name}; zone=${3:?zone}
venv='$HOME/diffssl_venv'  # expanded on the workers

on_all_workers() {
  gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "$1"
}

case "$action" in
  install)
    spec=${4:-diffssl_jax[tpu]}
    on_all_workers "set -e
      python3 -c 'import sys; assert sys.version_info >= (3, 12), \"Python >= 3.12 needed, got \" + sys.version.split()[0] + \": pick a newer TPU software version\"'
      python3 -m venv $venv
      $venv/bin/pip install -q --upgrade pip
      $venv/bin/pip install -q '$spec'
      $venv/bin/python -c 'import jax; print(jax.process_index(), jax.device_count(), \"devices\")'"
    ;;
  run)
    cmd=${4:?command to run, e.g. \"diffssl-train --config=... --workdir=gs://...\"}
    on_all_workers "set -e; source $venv/bin/activate; $cmd"
    ;;
  *)
    echo "unknown action '$action': use install or run" >&2
    exit 2
    ;;
esac
