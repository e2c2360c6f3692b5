#!/usr/bin/env bash
# Everything a lent CUDA machine is needed for, in one call: the CUDA tests, `expo bench` at
# the paper's settings in true float32 and in TF32, whole training runs, profiles, torch.compile.
#
#   bash benchmarks/cuda_session.sh [SECTION ...]   (logs and JSON under $OUT, default /tmp/expo-cuda)
#
# Sections: tests bench loop (the default), profile (torch.profiler of one update, cached and
# optimized), critic (benchmarks/critic_scoring.py), compile (benchmarks/compile_denoiser.py).
#
# Missing Python packages travel as wheels in .whl/ (see docs/RESULTS.md, "GPU"); expo-sdk itself
# is installed from a wheel built from this checkout (`pip wheel --no-deps -w .whl .`).
set -u
OUT=${OUT:-/tmp/expo-cuda}
SECTIONS=${*:-tests bench loop}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site || exit 1
fi
# Run from outside the checkout: its expo_sdk/ folder would shadow the installed package
# (whose expo_sdk.adapters comes from the checkout's adapters/ folder).
REPO=$(pwd)
cd /tmp
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, expo_sdk; print('torch', torch.__version__, torch.cuda.get_device_name())" || exit 1

if want tests; then
echo "== CUDA tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs $REPO/tests/test_cuda_graphs.py $REPO/tests/test_reference.py \
    $REPO/tests/test_adapter_ddpm.py $REPO/tests/test_adapter_flow_matching.py \
    $REPO/tests/test_adapter_consistency.py $REPO/tests/test_adapter_module.py $REPO/tests/test_finetuned.py \
    $REPO/tests/test_policy.py -k "cuda or graph or sync or reference or device" 2>&1 | tee "$OUT/tests.log" | tail -40
fi

want bench && for precision in ${PRECISIONS:-highest high}; do
    echo "== expo bench, float32 matmul precision $precision"
    timeout 150 python3 -m expo_sdk.cli bench --device cuda --json --repeats 5 --matmul-precision $precision \
        > "$OUT/bench_$precision.json" 2> "$OUT/bench_$precision.log" || tail -20 "$OUT/bench_$precision.log"
    python3 - "$OUT/bench_$precision.json" <<'PY' || true
import json, sys
from expo_sdk.bench import format_result
print(format_result(json.load(open(sys.argv[1]))))
PY
done

if want loop; then
    echo "== whole training runs (benchmarks/loop_speed.py)"
    timeout 150 python3 $REPO/benchmarks/loop_speed.py --device cuda --steps 150 2>&1 | tee "$OUT/loop_speed.log" | tail -4
fi

if want profile; then
    for path in cached optimized; do
        echo "== profile of one $path update"
        timeout 90 python3 $REPO/benchmarks/profile_update.py --device cuda --path $path --rows 15 2>&1 \
            | tee "$OUT/profile_$path.log" | tail -30
    done
fi

if want critic; then
    echo "== torch.compile of the critic ensemble"
    for precision in highest high; do
        timeout 120 python3 $REPO/benchmarks/critic_scoring.py --device cuda --matmul-precision $precision 2>&1 \
            | tail -3 | tee -a "$OUT/critic.log"
    done
fi

if want compile; then
    echo "== torch.compile of the denoiser"
    for args in "--rows 40960" "--rows 8" "--rows 8 --mode reduce-overhead"; do
        timeout 60 python3 $REPO/benchmarks/compile_denoiser.py --device cuda $args 2>&1 | tail -1 | tee -a "$OUT/compile.log"
    done
fi
