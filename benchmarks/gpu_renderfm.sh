#!/usr/bin/env bash
# One GPU slice for Render-FM (issue #10), then the Triton kernel timings (issue #9).
#
#   source .device/remote-env.sh && bash benchmarks/gpu_renderfm.sh "$OUT"
#
# 0. benchmarks/gpu_kernels.py (ray-marcher and slicing on the head CT);
# 1. train-renderfm with rfmweb/renderfm/configs/gpu.toml for at most $TRAIN_S seconds (resumes from
#    $OUT/run/checkpoint.pt if a previous slice left one in $RESUME);
# 2. benchmarks/bench_renderfm.py with the trained model (prepare stages, FPS);
# 3. evaluate-renderfm on the head CT ($EVAL_ARGS), resumable.
# Every step writes under $OUT, so whatever finished comes back even if the slice runs out.
set -u
OUT=${1:?usage: gpu_renderfm.sh OUT}
TRAIN_S=${TRAIN_S:-300}
STEPS=${STEPS:-}
CONFIG=${CONFIG:-rfmweb/renderfm/configs/gpu.toml}
EVAL_ARGS=${EVAL_ARGS:---phantoms 0 --only head-ct --methods 6dgs-agp renderfm renderfm+ft}
mkdir -p "$OUT/run"
[ -n "${RESUME:-}" ] && [ -f "$RESUME/checkpoint.pt" ] && cp "$RESUME/checkpoint.pt" "$RESUME/log.csv" "$OUT/run/" 2>/dev/null
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; python3 -c "import torch; print(torch.__version__)") > "$OUT/machine.txt" 2>&1
echo "== gpu_kernels $(date +%T)"
timeout 60 python3 benchmarks/gpu_kernels.py > "$OUT/gpu_kernels.md" 2> "$OUT/gpu_kernels.err"
echo "kernels rc=$?"; grep '^|' "$OUT/gpu_kernels.md"
echo "== train $(date +%T)"
python3 -m rfmweb train-renderfm --config "$CONFIG" --out "$OUT/run" --cache-dir /tmp/gt_cache \
    --time-limit-s "$TRAIN_S" ${STEPS:+--steps $STEPS} --no-progress > "$OUT/train.log" 2>&1
echo "train rc=$? $(tail -n 2 "$OUT/run/log.csv" | tr '\n' ' ')"
echo "== bench_renderfm $(date +%T)"
timeout 120 python3 benchmarks/bench_renderfm.py --checkpoint "$OUT/run/model.pt" --repeats "${REPEATS:-1}" > "$OUT/bench_renderfm.md" 2> "$OUT/bench_renderfm.err"
echo "bench rc=$?"; grep '^|' "$OUT/bench_renderfm.md"
echo "== evaluate $(date +%T)"
python3 -m rfmweb evaluate-renderfm --out "$OUT/eval" --checkpoint "$OUT/run/model.pt" --device "${DEVICE:-cuda}" $EVAL_ARGS \
    > "$OUT/eval.log" 2>&1
echo "eval rc=$?"; cat "$OUT/eval/table.md" 2>/dev/null
rm -rf "$OUT/eval"/*/views "$OUT/eval"/*/*.npz      # only reports and tables come back
echo "== done $(date +%T)"
