#!/usr/bin/env bash
# The reference study (config/reference.yaml) on a remote GPU box, in parts that fit its calls
# (README, "Running the GPU stages on a remote GPU box"). The box keeps ignored files between calls
# while it stays warm, so the study runs in the background in build/ref/ (a copy of the checkout
# without its committed results) and each call brings back what is done so far.
#   bench/reference_call.sh start COMMIT SEEDS [--omit-from RULE]  # copy, then snakemake in the background
#   bench/reference_call.sh collect OUTDIR [WAIT_S]                # wait up to WAIT_S for the end, then tar
# Data: the MedMNIST files in build/medmnist/ (each carried in its own call into .data/<name>/ and
# copied there: one dataset and the checkout fill a call's transfer). Timing: bench/study.py writes
# build/ref/bench/results/reference_<gpu>_<n>seed.json (wall time, seconds per stage family).
set -u
cmd=${1:?start|collect}; shift
case $cmd in
start)
    commit=${1:?COMMIT}; seeds=${2:?SEEDS, e.g. "0 1 2"}; shift 2
    rm -rf build/ref && mkdir -p build/ref
    tar -c --exclude=./build --exclude=./.data --exclude=./.site --exclude=./.whl . | tar -x -C build/ref
    # a rerun: none of the committed outputs may count as done
    rm -rf build/ref/results/runs build/ref/results/profile build/ref/results/aggregate build/ref/results/figures \
        build/ref/paper/generated build/ref/paper/main.pdf build/ref/logs build/ref/.snakemake
    cd build/ref
    # shellcheck disable=SC2086  # seeds and the extra arguments are word lists
    MEDMNIST_ROOT=$(realpath ../medmnist) setsid nohup python3 bench/study.py --config config/reference.yaml \
        --outdir . --commit "$commit" --seeds $seeds --out bench/results --snakemake-args "--keep-going" "$@" \
        > ../ref.log 2>&1 < /dev/null &
    sleep 20; tail -n 5 ../ref.log
    ;;
collect)
    out=${1:?OUTDIR}; wait_s=${2:-0}
    for _ in $(seq 1 $((wait_s / 5))); do pgrep -f bench/study.py > /dev/null || break; sleep 5; done
    pgrep -f bench/study.py > /dev/null && echo "study still running" || echo "study finished"
    grep -E "steps \([0-9]+%\) done|Error in rule|Exiting" build/ref.log | tail -n 4
    cd build/ref
    # three tarballs: the device tool returns files of at most 16 MiB (OrganAMNIST's logits are ~0.75 MB a run)
    tar -czf "$out/organamnist_28.tgz" --exclude='*.pt' results/runs/organamnist_28_* 2> /dev/null
    tar -czf "$out/organamnist_64.tgz" --exclude='*.pt' results/runs/organamnist_64_* 2> /dev/null
    tar -czf "$out/rest.tgz" --exclude='*.pt' --exclude='results/runs/organamnist_*' results logs benchmarks \
        bench/results 2> /dev/null; cp ../ref.log "$out/"
    ls -la "$out"
    ;;
esac
