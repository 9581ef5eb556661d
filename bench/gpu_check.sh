#!/usr/bin/env bash
# The GPU check: the CUDA path of training and full-ranking evaluation of every MetaMMF model beside
# LightGCN at the paper's TikTok scale (36,656 users, 76,085 items), seconds per epoch and peak GPU
# memory, mixed precision (RecBole's enable_amp) off and on, and two Ray Tune trials sharing one GPU.
# About 8 minutes on one recent GPU; every figure goes to $OUT/BENCHMARKS.md (copy what you keep into
# docs/BENCHMARKS.md with the GPU's name).
#
#   bash bench/gpu_check.sh                       # on a machine with a GPU
#   SCALE=0.02 EPOCHS=1 bash bench/gpu_check.sh   # the same path on the CPU, small (what the tests' machine runs)
#
# SCALE: share of the paper's counts (1 = Table 1 of the paper); EPOCHS: timed epochs per model;
# OUT: folder for the data, the report and the sweep (kept; the generated data is reused).
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=${SCALE:-1}
EPOCHS=${EPOCHS:-2}
OUT=${OUT:-/tmp/recbole_metammf_gpu_check}
MODELS=${MODELS:-MetaMMF_MF,MetaMMF_GCN,MetaMMF_LightGCN,LightGCN}
mkdir -p "$OUT"
REPORT="$OUT/BENCHMARKS.md"

python - <<'EOF'
import torch
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no CUDA device)")
EOF

echo "== training and evaluation, fp32"
python bench/epoch.py --synthetic=tiktok --scale="$SCALE" --work="$OUT/data" --models="$MODELS" \
    --epochs="$EPOCHS" --report="$REPORT"

if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "== training and evaluation, mixed precision (enable_amp)"
    python bench/epoch.py --synthetic=tiktok --scale="$SCALE" --work="$OUT/data" --models="$MODELS" \
        --epochs="$EPOCHS" --report="$REPORT" --enable_amp=True
    GPUS_PER_TRIAL=0.5   # two trials on one GPU
else
    echo "== mixed precision skipped: RecBole's enable_amp is CUDA only"
    GPUS_PER_TRIAL=0
fi

echo "== two Ray Tune trials at once (gpus per trial: $GPUS_PER_TRIAL)"
cat > "$OUT/space.yaml" <<'EOF'
cp_rank: {grid: [8, 16]}   # two trials
EOF
python run_tune.py --model=MetaMMF_MF --dataset=tiktok --space="$OUT/space.yaml" --scheduler=fifo \
    --gpus-per-trial="$GPUS_PER_TRIAL" --cpus-per-trial=1 --output="$OUT/tune" --name=gpu_check --no-test \
    --epochs=2 --verbose=0
cat "$OUT/tune/gpu_check/results.md"
echo "report: $REPORT"
