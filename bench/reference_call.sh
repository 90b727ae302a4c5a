#!/usr/bin/env bash
# The reference study (config/reference.yaml) on a remote GPU box, in parts that fit its calls
# (README, "Running the GPU stages on a remote GPU box"). The box keeps ignored files between calls
# while it stays warm, so the study runs in the background in build/ref/ (a copy of the checkout
# without its committed results) and each call brings back what is done so far.
#   bench/reference_call.sh start COMMIT SEEDS [--omit-from RULE]  # copy, then snakemake in the background
#   bench/reference_call.sh collect OUTDIR [WAIT_S]                # wait up to WAIT_S for the end, then tar
#   bench/reference_call.sh lock OUTDIR SEEDS                      # dvc commit the box's stages -> OUTDIR/dvc.lock
#   bench/reference_call.sh fp32 TRAIN_SEED LOGITS_SEED            # bench/fp32_check.sh in the background
# STUDY_CONFIG=config/study-shape.yaml runs another study the same way (issue 17's timing; its output folder is
# build/<name>-<n>seed inside the copy; `lock` is for the reference study only).
# Here: `tar -xzf` each tarball in the checkout, then aggregate, plot and paper (README). SEEDS: "0 1 2".
# The default --omit-from aggregate leaves aggregate, plot and paper to the machine with LaTeX, where
# the aggregate records the commit it was built from.
# Data: the MedMNIST files in build/medmnist/ (each carried in its own call into .data/<name>/ and
# copied there: one dataset and the checkout fill a call's transfer). Timing: bench/study.py writes
# build/ref/bench/results/reference_<gpu>_<n>seed.json (wall time, seconds per stage family).
set -u
cmd=${1:?start|collect}; shift
case $cmd in
start)
    commit=${1:?COMMIT}; seeds=${2:?SEEDS, e.g. "0 1 2"}; shift 2
    [ $# -gt 0 ] || set -- --omit-from aggregate
    rm -rf build/ref && mkdir -p build/ref
    tar -c --exclude=./build --exclude=./.data --exclude=./.site --exclude=./.whl --exclude=./.whl2 . | tar -x -C build/ref
    # a rerun: none of the committed outputs may count as done
    rm -rf build/ref/results/runs build/ref/results/compile build/ref/results/profile build/ref/results/aggregate build/ref/results/figures \
        build/ref/paper/generated build/ref/paper/main.pdf build/ref/logs build/ref/.snakemake
    cd build/ref
    config=${STUDY_CONFIG:-config/reference.yaml} name=reference outdir=.
    if [ "$config" != config/reference.yaml ]; then
        name=study outdir=build/$(basename "$config" .yaml)-$(echo $seeds | wc -w)seed
    fi
    echo "$outdir" > .study_outdir
    # shellcheck disable=SC2086  # seeds and the extra arguments are word lists
    MEDMNIST_ROOT=$(realpath ../medmnist) setsid nohup python3 bench/study.py --config "$config" --name $name \
        --outdir "$outdir" --commit "$commit" --seeds $seeds --out bench/results --snakemake-args=--keep-going "$@" \
        > ../ref.log 2>&1 < /dev/null &
    sleep 20; tail -n 5 ../ref.log
    ;;
collect)
    out=${1:?OUTDIR}; wait_s=${2:-0}
    for _ in $(seq 1 $((wait_s / 5))); do pgrep -f bench/study.py > /dev/null || break; sleep 5; done
    pgrep -f bench/study.py > /dev/null && echo "study still running" || echo "study finished"
    grep -E "steps \([0-9]+%\) done|Error in rule|Exiting" build/ref.log | tail -n 4
    cd "build/ref/$(cat build/ref/.study_outdir)"
    # three tarballs: the device tool returns files of at most 16 MiB (OrganAMNIST's logits are ~0.75 MB a run)
    tar -czf "$out/organamnist_28.tgz" --exclude='*.pt' results/runs/organamnist_28_* 2> /dev/null
    tar -czf "$out/organamnist_64.tgz" --exclude='*.pt' results/runs/organamnist_64_* 2> /dev/null
    tar -czf "$out/rest.tgz" --exclude='*.pt' --exclude='results/runs/organamnist_*' results logs benchmarks \
        fp32-check -C "$OLDPWD/build/ref" bench/results 2> /dev/null; cp "$OLDPWD/build/ref.log" "$out/"
    ls -la "$out"
    ;;
lock)
    # The lock of the stages that ran on the box, written where the data and checkpoints are (they do
    # not travel back); aggregate, plot and paper are committed here after the paper is built.
    out=${1:?OUTDIR}; seeds=${2:?SEEDS}
    cd build/ref
    py="import yaml; s = yaml.safe_load(open('config/reference.yaml'))['study']; print(*s['datasets'], '|',"
    py="$py *s['resolutions'], '|', *s['models'])"
    read -r -a parts <<< "$(python3 -c "$py")"
    datasets=() resolutions=() models=() i=0
    for w in "${parts[@]}"; do
        if [ "$w" = "|" ]; then i=$((i + 1)); continue; fi
        case $i in 0) datasets+=("$w") ;; 1) resolutions+=("$w") ;; 2) models+=("$w") ;; esac
    done
    dvcfile=pipelines/reference/dvc.yaml t=()
    for d in "${datasets[@]}"; do for r in "${resolutions[@]}"; do
        t+=("$dvcfile:download@$d-$r" "$dvcfile:preprocess@$d-$r")
        for m in "${models[@]}"; do for s in $seeds; do
            t+=("$dvcfile:train@$d-$r-$m-$s" "$dvcfile:evaluate@$d-$r-$m-$s")
        done; done
    done; done
    for r in "${resolutions[@]}"; do for m in "${models[@]}"; do  # a part run with --omit-from compile has none
        [ -d "results/profile/${r}_$m" ] && t+=("$dvcfile:compile@$r-$m" "$dvcfile:profile@$r-$m")
    done; done
    python3 -m dvc commit -f "${t[@]}" 2>&1 | tail -n 2
    cp pipelines/reference/dvc.lock "$out/"
    ;;
fp32)
    # issue 17 item 6 beside the reference study's runs (their checkpoints are here, on the box)
    cd build/ref
    setsid nohup bash bench/fp32_check.sh config/reference.yaml "${1:?TRAIN_SEED}" "${2:?LOGITS_SEED}" \
        > fp32-check.log 2>&1 < /dev/null &
    echo "fp32 check started"
    ;;
esac
