#!/usr/bin/env bash
# One GPU call's worth of fast-path measurements (bench/README.md, "CUDA graphs of the whole step"):
# the graphed step's numerics, then bench_train.py in each variant, each against the eager fp32
# baseline of its own process, then the default once more on a warm inductor cache (a second job's
# compile). Usage: bench/fastpath_variants.sh OUTDIR   (after `source tools/gpu_env.sh`)
set -u
out=${1:?OUTDIR}
mkdir -p "$out"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/ssmvit-inductor-cache}
rm -rf "$TORCHINDUCTOR_CACHE_DIR"   # the first compile is a cold one
common=(--colours gray --train-batches 64 --infer-batch 1024 --warmup 6 --repeats 30)
run() {  # name, then bench_train.py flags
    local name=$1; shift
    echo "## $name: $*"
    local t0=$SECONDS
    python3 bench/bench_train.py "${common[@]}" "$@" --out "$out/$name.csv" --summary "$out/${name}_summary.csv" \
        > "$out/$name.log" 2>&1
    echo "## $name: exit $?, $((SECONDS - t0)) s"; tail -n 12 "$out/$name.log"
}
echo "## graph step numerics"
python3 bench/check_graph_step.py --out "$out/graph_step_check.csv" 2>&1 | tail -n 8
run eager_graphs --no-compile --cuda-graphs
run default
run default_warm_cache --res 28
run compiled_graphs --cuda-graphs
echo "## graph step numerics, compiled"
python3 bench/check_graph_step.py --models vit s4d --res 28 --compile on --out "$out/graph_step_check_compiled.csv" 2>&1 | tail -n 3
