#!/bin/bash
# SLURM batch script: one single-run analysis (`python -m analysis COMMAND RUN`) per array task.
#
#   ls -d checkpoints/*/ > runs.txt                  # the run directories, one per line
#   mkdir -p slurm_out
#   ANALYSIS=checkpoints RUNS=runs.txt sbatch --array=0-$(($(wc -l < runs.txt) - 1)) submit_analysis.sh
#   ANALYSIS=probe ANALYSIS_FLAGS="--labels pos" RUNS=runs.txt sbatch --gres=none --array=0-9 submit_analysis.sh
#
# Array task i analyses the i-th run directory of the file RUNS (counting from 0; blank lines do
# not count). ANALYSIS is the command (checkpoints, internals, probe, trees), ANALYSIS_FLAGS its
# flags; outputs go where the command puts them (RUN/analysis/ unless --out). Relative paths, in
# RUNS and in the runs' args.json, are relative to the folder sbatch was run from. Each task asks
# for a GPU and runs on it (--device cuda); `sbatch --gres=none` runs the tasks on CPUs
# (--device auto). Every setting is an environment variable (sbatch passes the environment
# through) or an sbatch flag (flags override the #SBATCH lines below).
#SBATCH --job-name=hier_gen_analysis
#SBATCH --output=slurm_out/%x_%A_%a.out
#SBATCH --time=12:00:00
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
set -euo pipefail

# The checkout holding the analysis package: by default the folder sbatch was run from.
HIER_GEN_DIR=${HIER_GEN_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}
ANALYSIS=${ANALYSIS:-}
ANALYSIS_FLAGS=${ANALYSIS_FLAGS:-}
RUNS=${RUNS:-}
PYTHON=${PYTHON:-python}
# With GPUs allocated, insist on CUDA: a broken node then fails at once instead of running on CPU.
if [ "${SLURM_GPUS_ON_NODE:-0}" -gt 0 ]; then
    DEVICE=${DEVICE:-cuda}
else
    DEVICE=${DEVICE:-auto}
fi

fail() {
    echo "error: $*" >&2
    exit 2
}
[ -f "$HIER_GEN_DIR/analysis/__main__.py" ] ||
    fail "no analysis package in $HIER_GEN_DIR: submit from the checkout or set HIER_GEN_DIR"
[ -n "$ANALYSIS" ] || fail "set ANALYSIS to the command to run (checkpoints, internals, probe, trees)"
[ -f "$RUNS" ] || fail "set RUNS to a file listing run directories, one per line (RUNS='$RUNS')"

task=${SLURM_ARRAY_TASK_ID:-0}
mapfile -t runs < <(grep -v '^[[:space:]]*$' "$RUNS" || true)
[ "$task" -lt "${#runs[@]}" ] || fail "$RUNS lists ${#runs[@]} run directories: none for array task $task"

# The job runs in the submit folder; the package is found through PYTHONPATH.
export PYTHONPATH="$HIER_GEN_DIR${PYTHONPATH:+:$PYTHONPATH}"
# shellcheck disable=SC2086  # ANALYSIS_FLAGS is a list of flags
exec "$PYTHON" -m analysis "$ANALYSIS" "${runs[$task]}" --device "$DEVICE" $ANALYSIS_FLAGS
