#!/usr/bin/env bash
# One GPU slice for Neumours (issue #13): the paper's full recipe, the CNN baseline, the evaluation.
#
#   source .device/remote-env.sh && bash benchmarks/gpu_neumours.sh "$OUT"
#
# 0. the cohorts of the model card (train: 16 cases, seed 0; val and postop: $N_EVAL unseen cases,
#    seed 1; 2 mm), made again on the machine (about 0.35 s a case);
# 1. benchmarks/bench_inr.py on the device (inference per 240 x 240 x 155 case, training step);
# 2. train-inr, the full recipe ($INR_STEPS steps, 100 warm-up, cosine 1e-3 -> 5e-4), AdamW then Muon,
#    each stopped after $INR_S seconds at most and resumed by the next slice from $RESUME/<optimizer>;
# 3. train-cnn ($CNN_STEPS steps, its default 5.65 M-parameter U-Net unless $CNN_ARGS says otherwise,
#    stopped after $CNN_S seconds, resumed likewise from $RESUME/cnn);
# 4. evaluate-inr: both INRs and the CNN on val and postop (tables under $OUT/eval).
# Checkpoints are atomic, so a run stopped by the time limit resumes where its last one was written.
# Every step writes under $OUT, so whatever finished comes back even if the slice runs out.
set -u
OUT=${1:?usage: gpu_neumours.sh OUT}
DEVICE=${DEVICE:-cuda}
N_TRAIN=${N_TRAIN:-16}
N_EVAL=${N_EVAL:-20}
INR_STEPS=${INR_STEPS:-10000}
INR_S=${INR_S:-150}
CNN_STEPS=${CNN_STEPS:-4000}
CNN_S=${CNN_S:-150}
THREADS=${THREADS:-4}
BENCH=${BENCH:-1}
DATA=${DATA:-/tmp/neumours_cohort}
mkdir -p "$OUT"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; python3 -c "import torch; print(torch.__version__)") > "$OUT/machine.txt" 2>&1
echo "== cohorts $(date +%T)"
python3 -m rfmweb make-cohort --out "$DATA/train" --n "$N_TRAIN" --split train --seed 0 --resolution 2 --no-progress
for split in val postop; do
    python3 -m rfmweb make-cohort --out "$DATA/$split" --n "$N_EVAL" --split $split --seed 1 --resolution 2 --no-progress
done
echo "cohorts rc=$? $(ls "$DATA"/train | wc -l) train cases"
if [ "$BENCH" = 1 ]; then
    echo "== bench_inr $(date +%T)"
    timeout 120 python3 benchmarks/bench_inr.py --threads "$THREADS" --repeats 5 > "$OUT/bench_inr.md" 2> "$OUT/bench_inr.err"
    echo "bench rc=$?"; grep '^|' "$OUT/bench_inr.md"
fi
for opt in adamw muon; do
    echo "== train-inr $opt $(date +%T)"
    mkdir -p "$OUT/$opt"
    resume=
    if [ -n "${RESUME:-}" ] && [ -f "$RESUME/$opt/checkpoint.pt" ]; then
        cp "$RESUME/$opt/checkpoint.pt" "$RESUME/$opt/log.csv" "$OUT/$opt/" && resume=--resume
    fi
    timeout "$INR_S" python3 -m rfmweb train-inr "$DATA/train" --val "$DATA/val" --out "$OUT/$opt" --optimizer $opt \
        --steps "$INR_STEPS" --warmup 100 --device "$DEVICE" --threads "$THREADS" --checkpoint-every 250 \
        --val-every 1000 --no-progress $resume > "$OUT/$opt.log" 2>&1
    echo "train-inr $opt rc=$? $(tail -n 1 "$OUT/$opt/log.csv" | cut -d, -f1,3,7)"
done
echo "== train-cnn $(date +%T)"
mkdir -p "$OUT/cnn"
resume=
if [ -n "${RESUME:-}" ] && [ -f "$RESUME/cnn/checkpoint.pt" ]; then
    cp "$RESUME/cnn/checkpoint.pt" "$RESUME/cnn/log.csv" "$OUT/cnn/" && resume=--resume
fi
timeout "$CNN_S" python3 -m rfmweb train-cnn "$DATA/train" --out "$OUT/cnn" --steps "$CNN_STEPS" --device "$DEVICE" \
    --threads "$THREADS" --checkpoint-every 100 --no-progress ${CNN_ARGS:-} $resume > "$OUT/cnn.log" 2>&1
echo "train-cnn rc=$? $(tail -n 1 "$OUT/cnn/log.csv")"
echo "== evaluate $(date +%T)"
models=()
for opt in adamw muon; do [ -f "$OUT/$opt/model.pt" ] && models+=(--inr "$opt=$OUT/$opt/model.pt"); done
[ -f "$OUT/cnn/model.pt" ] && models+=(--cnn "$OUT/cnn/model.pt")
python3 -m rfmweb evaluate-inr --split val="$DATA/val" --split postop="$DATA/postop" "${models[@]}" \
    --no-fill-holes postop --threads "$THREADS" --no-progress --out "$OUT/eval" > "$OUT/eval.log" 2>&1
echo "eval rc=$?"; cat "$OUT/eval/table.md" 2>/dev/null
echo "== done $(date +%T)"
