#!/bin/bash
# Submit submit_gpu.sh: GPUS=1 (the default, the paper) asks each array task for that many GPUs,
# GPUS=0 for none (CPU-only partitions). Arguments go to sbatch; settings are environment
# variables, listed in submit_gpu.sh and README.md.
#
#   ./submit.sh --array=0-9
#   GPUS=0 DATASET=question_D50 ./submit.sh --partition=cpu --array=0-4
set -euo pipefail

GPUS=${GPUS:-1}
if ! [[ "$GPUS" =~ ^[0-9]+$ ]]; then
    echo "error: GPUS must be a number of GPUs per task, got '$GPUS'" >&2
    exit 2
fi
HIER_GEN_DIR=${HIER_GEN_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
export HIER_GEN_DIR

gres=()
if [ "$GPUS" -gt 0 ]; then
    gres=(--gres="gpu:$GPUS")
fi
# sbatch does not create the log folder, and a job that cannot open its log dies without one.
mkdir -p slurm_out
exec sbatch "${gres[@]}" "$@" "$HIER_GEN_DIR/submit_gpu.sh"
