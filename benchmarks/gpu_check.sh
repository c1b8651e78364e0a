#!/usr/bin/env bash
# The one prepared GPU check: does the CUDA path work end to end, and how fast is the step?
# Fits a 10-minute device call on an H100; the issue-#25 checks run first. From the repo root, on the GPU machine:
#
#   bash benchmarks/gpu_check.sh            # results under $OUT (device tool) or results/gpu-check
#
# That machine has torch and most dependencies but no network: carry lpips and pytorch-fid
# as wheels in .whl/ (made here with `pip download --no-deps --only-binary=:all: -d .whl
# lpips==0.1.4 pytorch-fid==0.3.0`, .whl/ git-ignored). DEVICE=cpu STEP_CONFIGS=64-nf32
# STEPS=2 GPU_PATHS_ARGS="--size 64 --width 8 --photos 64" RESUME_STEPS=60 CHECK_STEPS=10 runs the same script on a CPU, to
# check the script itself.
set -uo pipefail
OUT=$(realpath -m "${OUT:-results/gpu-check}")
REPO=$PWD
DEVICE=${DEVICE:-cuda}
STEP_CONFIGS=${STEP_CONFIGS:-256,64-nf64,64-nf32}
STEPS=${STEPS:-20}
PEAK=${PEAK_TFLOPS:-989}  # H100 SXM dense bf16
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1

step() { echo; echo "=== $* ($(date +%T))"; }

step "set-up"
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .whl/*.whl || exit 1
fi
$PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$WORK/site" . || exit 1
export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}" COLORBENCH_OFFLINE=1 PYTHONUNBUFFERED=1
cd "$WORK"  # run the installed copy, as a user would
BENCH="$PY -m bench"
$PY -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else '', '| bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported())"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv

# --- the GPU paths of issue #25 first: each a bug a user's first GPU run would hit ---
step "#25.1 a GAN cell stopped by SIGINT and resumed gives the metrics of an uninterrupted --deterministic run"
RESUME="--device $DEVICE --deterministic --losses 100*l1+gan --steps ${RESUME_STEPS:-400} --checkpoint-seconds 2 -q"
timeout 300 $BENCH run $RESUME --out "$WORK/whole" >/dev/null 2>&1
timeout 300 $BENCH run $RESUME --out "$WORK/stopped" >/dev/null 2>"$WORK/stopped.err" & PID=$!
for _ in $(seq 600); do ls "$WORK"/stopped/cells/*/seed0/checkpoint.pt >/dev/null 2>&1 && break; sleep 0.2; done
kill -INT $PID; wait $PID; echo "stopped with exit code $? (130 expected): $(tail -2 "$WORK/stopped.err" | tr '\n' ' ')"
timeout 300 $BENCH run $RESUME --out "$WORK/stopped" 2>&1 | grep -i "resum" | head -2
cmp "$WORK/whole/metrics.csv" "$WORK/stopped/metrics.csv" && echo "resume: metrics.csv identical to the uninterrupted run" \
  || { echo "resume: metrics.csv DIFFER"; diff "$WORK/whole/metrics.csv" "$WORK/stopped/metrics.csv" | head; }

step "#25.2 --launcher local without --devices: the jobs see the GPUs"
timeout 300 $BENCH run --device "$DEVICE" --launcher local --losses l1,gan --steps ${CHECK_STEPS:-50} --out "$WORK/nodevices" -q \
  && $BENCH status "$WORK/nodevices" | tail -2 && grep -h '"device"' "$WORK"/nodevices/cells/*/seed0/metrics.json | sort | uniq -c

step "#25.3-5 one paper-size step in fp32/bf16/fp16 (GradScaler), gradients compared; the Scorer on 2,000 photos at 256 px"
timeout 300 $PY "$REPO/benchmarks/gpu_paths.py" --device "$DEVICE" ${GPU_PATHS_ARGS:-} | tee "$OUT/gpu_paths.md"

step "#25.3 a wgangp cell (layer-norm critic, gradient penalty)"
timeout 300 $BENCH run --device "$DEVICE" --gan-mode wgangp --losses 100*l1+gan --steps ${CHECK_STEPS:-100} --out "$WORK/wgangp" -q \
  && grep -E "psnr|de00" "$WORK/wgangp/metrics.csv" | head -4

step "--compile: 100 steps, then scoring"
/usr/bin/time -f "compiled cell: %e s wall" timeout 300 $BENCH run --device "$DEVICE" --compile --losses l1 --steps ${CHECK_STEPS:-100} \
  --out "$WORK/compile" -q && grep -E "psnr|de00" "$WORK/compile/metrics.csv" | head -4

step "every loss trains and scores on $DEVICE (sample set, the quick preset's 300 steps, auto precision), then the report"
/usr/bin/time -f "bench run: %e s wall" $BENCH run --device "$DEVICE" --losses mse,l1,perceptual,gan,100*l1+gan,classification,lpips \
  --out "$WORK/run" -q && $BENCH report "$WORK/run" --device "$DEVICE" \
  && cp "$WORK/run/report.md" "$OUT/report.md" && cp "$WORK/run/config.json" "$OUT/config.json"

step "--deterministic: two identical runs give identical metrics"
for i in 1 2; do
  $BENCH run --device "$DEVICE" --deterministic --losses l1,100*l1+gan --steps 50 --out "$WORK/det$i" -q >/dev/null 2>&1
done
cmp "$WORK/det1/metrics.csv" "$WORK/det2/metrics.csv" && echo "deterministic: metrics.csv identical" \
  || { echo "deterministic: metrics.csv DIFFER"; diff "$WORK/det1/metrics.csv" "$WORK/det2/metrics.csv" | head; }

step "scale-out: cells as local jobs on the GPU(s), and one cell data-parallel when there are 2+ GPUs"
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
if [ "$DEVICE" = cuda ] && [ "$NGPU" -ge 1 ]; then
  DEVS=$($PY -c "print(','.join(f'cuda:{i}' for i in range($NGPU)))")
  /usr/bin/time -f "local launcher on $DEVS: %e s wall" $BENCH run --launcher local --devices "$DEVS" \
    --losses l1,100*l1+gan --steps 100 --out "$WORK/local" -q && $BENCH status "$WORK/local" | tail -3
  if [ "$NGPU" -ge 2 ]; then
    /usr/bin/time -f "--gpus-per-cell 2 (NCCL, SyncBatchNorm): %e s wall" $BENCH run --gpus-per-cell 2 \
      --losses 100*l1+gan --steps 100 --out "$WORK/ddp" -q && grep -h world_size "$WORK"/ddp/cells/*/seed0/metrics.json
  else
    echo "one GPU: --gpus-per-cell 2 (NCCL) not checked"
  fi
fi

step "training-step throughput (reference vs colorbench, fp32/bf16, NCHW/NHWC)"
cd - >/dev/null
$PY benchmarks/train_step.py --device "$DEVICE" --configs "$STEP_CONFIGS" --steps "$STEPS" --warmup 3 \
  --peak-tflops "$PEAK" | tee "$OUT/train_step.md"
step "torch.compile rows (256 px, or the first config)"
$PY benchmarks/train_step.py --device "$DEVICE" --configs "${STEP_CONFIGS%%,*}" --steps "$STEPS" --warmup 3 \
  --compile --peak-tflops "$PEAK" | tee "$OUT/train_step_compile.md"

step "bf16 against fp32 scores (sample set; a smoke test of the numerics)"
$PY benchmarks/precision_check.py --device "$DEVICE" --losses l1,100*l1+gan --epochs "${PREC_EPOCHS:-20}" \
  --out "$WORK/precision" | tail -12 | tee "$OUT/precision.md"
step "done"
