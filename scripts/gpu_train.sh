#!/usr/bin/env bash
# One lease of a GPU machine, used whole: the decoder-runtime GPU check (issue 7), then
# Stage I training runs one after another (issue 5) until a deadline, then their weights packed
# for the trip back. Everything it returns lands in $OUT (at most 8 files of 16 MiB).
#
#   here, once:      benchmarks/gpu_check.sh prepare            # wheels -> .whl/
#                    python scripts/gpu_pack.py pack            # corpus + init -> data/gpu/ (~26 MiB)
#   on the device:   command: "bash scripts/gpu_train.sh"   carry: [".whl", "data/gpu"]
#                    timeout_s: 590  (SECONDS=560 by default: the whole script's deadline)
#   back here:       python scripts/gpu_pack.py unharvest OUT/stage1t-tiny runs/stage1t-tiny --base runs/stage1n-tiny
#
# A vae-stage config (the fine decoder: configs/train/vae-dec-fine-gpu.yaml, carry
# ["data/gpu-fine", ".whl"], no data/gpu) comes back as NAME.fine-decoder.safetensors, exported.
#
# Set in the environment: CONFIGS (space-separated train configs), DEVICE (cuda),
# DEADLINE_S (560), CHECK_BUDGET (260 seconds for the GPU check, 0 skips it), CHECK_ARGS
# (more arguments of benchmarks/gpu_check.py, e.g. "--parts layered"), REFINE_CHECK=1
# (benchmarks/refine_device.py before training), NO_WHEELS=1
# (use the installed packages). A dry run here: NO_WHEELS=1 DEVICE=cpu CHECK_BUDGET=0
# DEADLINE_S=170 OUT=/tmp/gto PATH=.venv/bin:$PATH bash scripts/gpu_train.sh
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
deadline=$((start + ${DEADLINE_S:-560}))
out="${OUT:-/tmp/gpu_train_out}"
mkdir -p "$out"
configs=${CONFIGS:-"configs/train/stage1t-tiny.yaml"}
check_budget=${CHECK_BUDGET:-260}
export PYTHONUNBUFFERED=1

if [ -z "${NO_WHEELS:-}" ]; then   # NO_WHEELS=1: the local environment has them (a dry run here)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 2
fi
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# Stage I configs that start from the shipped export (init: runs/init-onedc-tiny, e.g.
# stage1u-colour-gpu.yaml with carry ["data/gpu-fine", ".whl"]) get it revived here
if grep -qs '^init: runs/init-onedc-tiny' $configs && [ ! -d runs/init-onedc-tiny ]; then
  python3 scripts/gpu_pack.py revive || exit 2
fi
if [ -d data/gpu ]; then   # Stage I configs start from data/gpu/init; vae configs need no pack
  python3 scripts/gpu_pack.py assemble data/gpu || exit 2
  # The assembled init (~42 MiB) is rebuilt on every call: never leave it in the pack, where a
  # dry run here would push the next lease's carry (data/gpu + .whl) over its 64 MiB.
  trap 'rm -rf data/gpu/init' EXIT
fi

if [ "$check_budget" -gt 0 ]; then
  echo "== GPU check (budget ${check_budget} s)"
  timeout $((check_budget + 90)) python3 benchmarks/gpu_check.py --device cuda --repeats 2 \
    --budget "$check_budget" --json "$out/gpu_check.json" ${CHECK_ARGS:-} > "$out/gpu_check.log" 2>&1
  echo "gpu_check exit $?"; tail -n 40 "$out/gpu_check.log"
fi

if [ -n "${REFINE_CHECK:-}" ]; then   # the refining encoder on the device vs the CPU (a benchmark)
  echo "== refine on ${DEVICE:-cuda}"
  timeout 150 python3 benchmarks/refine_device.py data/gpu/val/00_libjxl__jxl_flower_flower.png \
    --device "${DEVICE:-cuda}" --json "$out/refine_device.json" 2>&1 | tail -n 4
fi

# One run at a time: two runs side by side made 1.8 and 1.5 steps/s (stage1q, H100), the
# same run alone 9 steps/s (the processes fight over the GPU and the host's threads).
set -- $configs
while [ "$#" -gt 0 ]; do
  cfg=$1; shift
  left=$(( (deadline - $(date +%s) - 50) / ($# + 1) ))   # this run's share; 50 s for harvesting
  [ "$left" -ge 30 ] || left=30
  name=$(basename "$cfg" .yaml)
  echo "== training $name for $left s"
  timeout $((left + 35)) python3 -m onedc_media.cli.main train --config "$cfg" --device "${DEVICE:-cuda}" \
    --no-progress --max-minutes "$(python3 -c "print(max(0.5, $left / 60))")" > "$out/$name.log" 2>&1
  echo "$name exit $?"   # a run stopped by timeout still leaves its last checkpoint
done

tar_items=()
for cfg in $configs; do
  name=$(basename "$cfg" .yaml)
  run=$(python3 -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['run_dir'])" "$cfg")
  tail -n 5 "$out/$name.log"
  stage=$(python3 -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['stage'])" "$cfg")
  if [ "$stage" = vae ]; then   # a fine decoder: 735 KB, exported beside a copy of the model
    rm -rf /tmp/fine-model && cp -r onedc_media/weights/onedc-tiny /tmp/fine-model \
      && python3 -m onedc_media.cli.main export "$run" --fine-decoder -o /tmp/fine-model \
      && cp /tmp/fine-model/fine-decoder.safetensors "$out/$name.fine-decoder.safetensors"
  else
    python3 scripts/gpu_pack.py harvest "$run" "$out/$name" || true
  fi
  cp "$run/metrics.csv" "$out/$name-metrics.csv" 2>/dev/null
  cp "$run/val.csv" "$out/$name-val.csv" 2>/dev/null
  tail -n 3 "$run/metrics.csv" 2>/dev/null; cat "$run/val.csv" 2>/dev/null
  tar_items+=("$name.log" "$name-metrics.csv" "$name-val.csv")
done
(cd "$out" && tar czf logs.tar.gz --ignore-failed-read "${tar_items[@]}" 2>/dev/null \
  && rm -f "${tar_items[@]}")
ls -l "$out"
echo "done in $(( $(date +%s) - start )) s"
