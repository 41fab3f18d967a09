#!/bin/bash
# SLURM batch script for the paper configuration: one array task per training seed.
#
#   mkdir -p slurm_out && sbatch --array=0-9 submit_gpu.sh
#   DATASET=question_D50 LR=1e-4 SEED0=100 sbatch --array=0-4 submit_gpu.sh
#
# Every setting is an environment variable (sbatch passes the environment through), so sweeps need
# no edits of this file. Array task i trains seed SEED0 + i, or the i-th entry of SEEDS="42,7,13".
#SBATCH --job-name=hier_gen
#SBATCH --output=slurm_out/%x_%A_%a.out
#SBATCH --time=48:00:00
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
set -euo pipefail

DATASET=${DATASET:-question_qf_disamb}
DISAMB_NUM=${DISAMB_NUM:-0}
LR=${LR:-1e-4}
STEPS=${STEPS:-300000}
WARMUP=${WARMUP:-10000}
LAYERS=${LAYERS:-6}
EVAL_EVERY=${EVAL_EVERY:-2000}
SAVE_EVERY=${SAVE_EVERY:-100000}
SAVE_DIR=${SAVE_DIR:-./checkpoints/}
DATA_DIR=${DATA_DIR:-data_utils}
SEED0=${SEED0:-42}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
PYTHON=${PYTHON:-python}

task=${SLURM_ARRAY_TASK_ID:-0}
if [ -n "${SEEDS:-}" ]; then
    IFS=, read -r -a seed_list <<< "$SEEDS"
    SEED=${seed_list[$task]:?"SEEDS has no entry for array task $task"}
else
    SEED=$((SEED0 + task))
fi
name="${DATASET}_lr${LR}_seed${SEED}"

# shellcheck disable=SC2086  # EXTRA_FLAGS is a list of flags
exec "$PYTHON" train_transformers.py --callback --batch_size 8 --dataset "$DATASET" \
    --disamb_num "$DISAMB_NUM" --max_train_steps "$STEPS" --encoder_n_layers "$LAYERS" --lr "$LR" \
    --num_warmup_steps "$WARMUP" --weight_decay 0.0 --max_grad_norm 1.0 --eval_every "$EVAL_EVERY" \
    --seed "$SEED" --tied-embedding --run_name "$name" --save_every "$SAVE_EVERY" \
    --save_dir "$SAVE_DIR" --save_prefix "$name" --data_dir "$DATA_DIR" $EXTRA_FLAGS
