#!/bin/bash
# SLURM batch script for the paper configuration: one array task per training seed.
#
#   mkdir -p slurm_out && sbatch --array=0-9 submit_gpu.sh              # seeds 42..51, one GPU each
#   sbatch --gres=none --partition=cpu --array=0-4 submit_gpu.sh        # a CPU-only partition
#
# Every setting is an environment variable (sbatch passes the environment through) or an sbatch
# flag (flags override the #SBATCH lines below), so sweeps need no edits of this file.
# Array task i trains seed SEED0 + i, or the i-th entry of SEEDS="42,7,13"; with SEEDS_PER_TASK=k,
# the k seeds from the (i*k)-th on, at once (--seeds). PREFIX names the runs ({PREFIX}_seed{N}).
#
# Time limit: SLURM sends USR1 to python (exec'd below, so it is the batch shell) five minutes
# before the limit; python checkpoints at the next step, requeues the job and exits with 75. The
# requeued job runs this script again under the same job id, so --resume finds the same run
# directory and continues from its latest checkpoint. TERM (scancel, or a preemption, which SLURM
# requeues by itself) also checkpoints, without requeueing.
#SBATCH --job-name=hier_gen
#SBATCH --output=slurm_out/%x_%A_%a.out
#SBATCH --open-mode=append
#SBATCH --time=48:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
set -euo pipefail

# The checkout holding train_transformers.py: by default the folder sbatch was run from.
HIER_GEN_DIR=${HIER_GEN_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}
DATASET=${DATASET:-question_qf_disamb}
DISAMB_NUM=${DISAMB_NUM:-0}
LR=${LR:-1e-4}
STEPS=${STEPS:-300000}
WARMUP=${WARMUP:-10000}
LAYERS=${LAYERS:-6}
EVAL_EVERY=${EVAL_EVERY:-2000}
SAVE_EVERY=${SAVE_EVERY:-100000}
SAVE_DIR=${SAVE_DIR:-./checkpoints/}
DATA_DIR=${DATA_DIR:-$HIER_GEN_DIR/data_utils}
SEED0=${SEED0:-42}
EXTRA_FLAGS=${EXTRA_FLAGS:-}
PYTHON=${PYTHON:-python}
# With GPUs allocated, insist on CUDA: a broken node then fails at once instead of training on CPU.
if [ "${SLURM_GPUS_ON_NODE:-0}" -gt 0 ]; then
    DEVICE=${DEVICE:-cuda}
else
    DEVICE=${DEVICE:-auto}
fi

if [ ! -f "$HIER_GEN_DIR/train_transformers.py" ]; then
    echo "error: no train_transformers.py in $HIER_GEN_DIR: submit from the checkout or set HIER_GEN_DIR" >&2
    exit 2
fi

task=${SLURM_ARRAY_TASK_ID:-0}
# SEEDS_PER_TASK=k: task i trains the k seeds from the (i*k)-th on at once (--seeds).
SEEDS_PER_TASK=${SEEDS_PER_TASK:-1}
task_seeds=()
for ((k = task * SEEDS_PER_TASK; k < (task + 1) * SEEDS_PER_TASK; k++)); do
    if [ -n "${SEEDS:-}" ]; then
        IFS=, read -r -a seed_list <<< "$SEEDS"
        [ "$k" -lt "${#seed_list[@]}" ] || break
        task_seeds+=("${seed_list[$k]}")
    else
        task_seeds+=($((SEED0 + k)))
    fi
done
[ "${#task_seeds[@]}" -gt 0 ] || { echo "error: SEEDS has no entry for array task $task" >&2; exit 2; }
PREFIX=${PREFIX:-${DATASET}_lr${LR}}
if [ "$SEEDS_PER_TASK" -eq 1 ]; then
    name="${PREFIX}_seed${task_seeds[0]}"
    seed_flags=(--seed "${task_seeds[0]}")
else  # each seed's run directory and W&B run get _seed{N} appended to the name
    name=$PREFIX
    seed_flags=(--seeds "$(IFS=,; echo "${task_seeds[*]}")")
fi

# shellcheck disable=SC2086  # EXTRA_FLAGS is a list of flags
exec "$PYTHON" "$HIER_GEN_DIR/train_transformers.py" --callback --batch_size 8 --dataset "$DATASET" \
    --disamb_num "$DISAMB_NUM" --max_train_steps "$STEPS" --encoder_n_layers "$LAYERS" --lr "$LR" \
    --num_warmup_steps "$WARMUP" --weight_decay 0.0 --max_grad_norm 1.0 --eval_every "$EVAL_EVERY" \
    "${seed_flags[@]}" --tied-embedding --run_name "$name" --save_every "$SAVE_EVERY" \
    --save_dir "$SAVE_DIR" --save_prefix "$name" --data_dir "$DATA_DIR" --device "$DEVICE" \
    --resume $EXTRA_FLAGS
