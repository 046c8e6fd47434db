#!/usr/bin/env bash
# One GPU slice for issues #9, #10 and #13 together (a lent machine comes for ~15 minutes, starts included).
#
#   source .device/remote-env.sh && bash benchmarks/gpu_session.sh "$OUT"
#
# A. timings, each alone on the GPU (the Neumours cohorts are made on the CPU meanwhile):
#    benchmarks/gpu_kernels.py (#9), benchmarks/bench_renderfm.py (#10), benchmarks/bench_inr.py (#13);
# B. four trainings side by side for at most $TRAIN_S seconds each: Render-FM stage 4
#    (configs/gpu_finetune.toml from the shipped weights), the Neumours INR with AdamW and with Muon
#    (the paper's full recipe), and the CNN baseline (the calibration target); meanwhile the GPU tests
#    (`pytest -m gpu`: Triton and gsplat against their torch twins on CUDA);
# C. evaluate-inr (val, postop) and evaluate-renderfm (head CT: the new model with the per-scan fit,
#    the shipped one) side by side;
# D. pack: $OUT holds at most 8 files (the device tool's limit), so runs come back as archives.
# Every step has its own time limit inside $DEADLINE_S, so D always runs. TIMINGS=0 skips step A.
#
# Here, before the call: `bash ../shared/device/stage.sh`; to continue an earlier slice, unpack its
# renderfm.tgz and inr.tgz into .device/resume/ (Render-FM and the INRs resume from their checkpoints;
# the CNN's optimizer state is too large to come back, so the CNN starts from .device/resume/cnn/model.pt
# when there is one, with a fresh schedule: the last slice's, or the CPU-trained runs/cnn/cnn256x2's).
# Then call the device
# tool with carry [".device"], timeout_s 585 and the command
#   source .device/remote-env.sh && bash benchmarks/gpu_session.sh "$OUT" 2>&1 | tee "$OUT/session.log"
set -u
OUT=${1:?usage: gpu_session.sh OUT}
DEADLINE_S=${DEADLINE_S:-520}
TRAIN_S=${TRAIN_S:-250}
DEVICE=${DEVICE:-cuda}
N_TRAIN=${N_TRAIN:-256}
N_EVAL=${N_EVAL:-20}
INR_STEPS=${INR_STEPS:-10000}
CNN_STEPS=${CNN_STEPS:-4000}
CNN_ARGS=${CNN_ARGS:---patch 64 --batch 2}
RFM_STEPS=${RFM_STEPS:-}
WORK=${WORK:-/tmp/gpu_session}
RESUME=${RESUME:-.device/resume}
TIMINGS=${TIMINGS:-1}        # 0: skip step A's timings (a later slice that only trains)
T0=$(date +%s)
left() { local s=$(( DEADLINE_S - ($(date +%s) - T0) )); echo $(( s > 5 ? s : 5 )); }
stamp() { echo "== $* (t=$(( $(date +%s) - T0 )) s)"; }
mkdir -p "$OUT" "$WORK/logs"
L=$WORK/logs
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc
    python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} > "$L/machine.txt" 2>&1
cat "$L/machine.txt"

stamp "A: cohorts in the background, timings in turn"
(
    python3 -m rfmweb make-cohort --out "$WORK/cohort/train" --n "$N_TRAIN" --split train --seed 0 --resolution 2 \
        --workers 2 --no-progress &
    for split in val postop; do
        python3 -m rfmweb make-cohort --out "$WORK/cohort/$split" --n "$N_EVAL" --split $split --seed 1 \
            --resolution 2 --no-progress &
    done
    wait
) > "$L/cohort.log" 2>&1 &
COHORT=$!
if [ "$TIMINGS" = 1 ]; then
    timeout "$(( $(left) < 90 ? $(left) : 90 ))" python3 benchmarks/gpu_kernels.py \
        > "$L/gpu_kernels.md" 2> "$L/gpu_kernels.err"
    echo "gpu_kernels rc=$?"; grep '^|' "$L/gpu_kernels.md"
    timeout 60 python3 benchmarks/bench_renderfm.py --device "$DEVICE" --repeats 3 \
        > "$L/bench_renderfm.md" 2> "$L/bench_renderfm.err"
    echo "bench_renderfm rc=$?"; grep '^|' "$L/bench_renderfm.md"
    timeout 90 python3 benchmarks/bench_inr.py --devices "$DEVICE" --threads 4 --repeats 5 \
        > "$L/bench_inr.md" 2> "$L/bench_inr.err"
    echo "bench_inr rc=$?"; grep '^|' "$L/bench_inr.md"
fi
wait $COHORT; echo "cohorts: $(ls "$WORK/cohort/train" | wc -l) train, $(ls "$WORK/cohort/val" | wc -l) val cases"

stamp "B: trainings side by side"
for run in renderfm inr_adamw inr_muon; do
    if [ -f "$RESUME/$run/checkpoint.pt" ]; then
        mkdir -p "$WORK/$run" && cp "$RESUME/$run"/* "$WORK/$run/" && echo "resuming $run"
    fi
done
T=$(( $(left) - 75 < TRAIN_S ? $(left) - 75 : TRAIN_S ))
T=$(( T > 30 ? T : 30 ))
timeout $(( T + 40 )) python3 -m rfmweb train-renderfm --config rfmweb/renderfm/configs/gpu_finetune.toml \
    --init rfmweb/weights/renderfm.pt --out "$WORK/renderfm" --cache-dir "$WORK/gt_cache" --time-limit-s "$T" \
    --threads 2 ${RFM_STEPS:+--steps $RFM_STEPS} --no-progress > "$L/train_renderfm.log" 2>&1 &
for opt in adamw muon; do
    timeout "$T" python3 -m rfmweb train-inr "$WORK/cohort/train" --val "$WORK/cohort/val" --out "$WORK/inr_$opt" \
        --optimizer $opt --steps "$INR_STEPS" --warmup 100 --device "$DEVICE" --threads 2 --checkpoint-every 250 \
        --val-every 2500 --no-progress $([ -f "$WORK/inr_$opt/checkpoint.pt" ] && echo --resume) \
        > "$L/train_inr_$opt.log" 2>&1 &
done
timeout "$T" python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_raymarch.py tests/test_splats_raster.py \
    tests/test_triton_kernels.py tests/test_renderfm.py > "$L/pytest_gpu.log" 2>&1 &
CNN_INIT=()
[ -f "$RESUME/cnn/model.pt" ] && CNN_INIT=(--init "$RESUME/cnn/model.pt") && echo "cnn starts from $RESUME/cnn/model.pt"
timeout "$T" python3 -m rfmweb train-cnn "$WORK/cohort/train" --out "$WORK/cnn" --steps "$CNN_STEPS" \
    --device "$DEVICE" --precision bf16 --threads 2 --checkpoint-every 200 --no-progress $CNN_ARGS "${CNN_INIT[@]}" \
    > "$L/train_cnn.log" 2>&1 &
wait
for run in renderfm inr_adamw inr_muon cnn; do echo "$run: $(tail -n 1 "$WORK/$run/log.csv" 2>/dev/null)"; done
echo "pytest -m gpu: $(tail -n 1 "$L/pytest_gpu.log")"

stamp "C: evaluations side by side"
E=$(( $(left) - 15 ))
models=()
for opt in adamw muon; do [ -f "$WORK/inr_$opt/model.pt" ] && models+=(--inr "$opt=$WORK/inr_$opt/model.pt"); done
[ -f "$WORK/cnn/model.pt" ] && models+=(--cnn "$WORK/cnn/model.pt")
timeout "$E" python3 -m rfmweb evaluate-inr --split val="$WORK/cohort/val" --split postop="$WORK/cohort/postop" \
    "${models[@]}" --no-fill-holes postop --threads 4 --no-progress --out "$WORK/eval_inr" > "$L/eval_inr.log" 2>&1 &
if [ -f "$WORK/renderfm/model.pt" ]; then
    timeout "$E" python3 -m rfmweb evaluate-renderfm --out "$WORK/eval_rfm_new" --checkpoint "$WORK/renderfm/model.pt" \
        --device "$DEVICE" --phantoms 0 --head-ct ../shared/data/head_ct --only head-ct \
        --methods 6dgs-agp renderfm renderfm+ft \
        > "$L/eval_rfm_new.log" 2>&1 &
fi
timeout "$E" python3 -m rfmweb evaluate-renderfm --out "$WORK/eval_rfm_shipped" --device "$DEVICE" --phantoms 0 \
    --head-ct ../shared/data/head_ct --only head-ct --methods renderfm renderfm+ft > "$L/eval_rfm_shipped.log" 2>&1 &
wait
for t in eval_inr eval_rfm_new eval_rfm_shipped; do echo "-- $t"; cat "$WORK/$t/table.md" 2>/dev/null; done

stamp "D: pack"
rm -rf "$WORK"/eval_rfm_*/*/views "$WORK"/eval_rfm_*/*/*.npz
for run in renderfm inr_adamw inr_muon cnn; do cp "$WORK/$run/log.csv" "$L/${run}_log.csv" 2>/dev/null; done
tar czf "$OUT/logs.tgz" -C "$WORK" --exclude "*.npz" --exclude "*.nii*" --exclude "*.pt" --exclude "*.ply" \
    --exclude views logs $(cd "$WORK" && ls -d eval_* 2>/dev/null)
tar czf "$OUT/renderfm.tgz" -C "$WORK" --exclude gt_cache renderfm 2>/dev/null
tar czf "$OUT/inr.tgz" -C "$WORK" inr_adamw inr_muon 2>/dev/null
tar cf - -C "$WORK" --exclude checkpoint.pt cnn 2>/dev/null | split -b 15M - "$OUT/cnn.tar.part-"
ls -la "$OUT"
stamp done
