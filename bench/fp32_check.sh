#!/usr/bin/env bash
# Issue 17 item 6, on the GPU box, in a study's output folder (e.g. build/ref/ after the reference study):
# 1. the plain fp32 step (no part of the fast path) trained on OrganAMNIST-28 for ViT and S4D with seed
#    TRAIN_SEED, 5 epochs, beside the study's fast-path runs of the same seed (test accuracy within 1 point);
# 2. the fast-path checkpoint of seed LOGITS_SEED evaluated again with every fast-path part off, beside the
#    study's own evaluation of it (which computes test logits in fp32 too: the same logits are expected).
# Writes fp32-check/; bench/compare_fp32.py compares, where the study's runs are.
#   bash bench/fp32_check.sh CONFIG TRAIN_SEED LOGITS_SEED [--set KEY=VALUE ...]
set -u
config=${1:?CONFIG}; train_seed=${2:?TRAIN_SEED}; logits_seed=${3:?LOGITS_SEED}; shift 3
fp32=(--set train.fast_path.bf16_autocast=false --set train.fast_path.fused_optimizer=false
      --set train.fast_path.compile=false --set train.fast_path.cuda_graphs=false
      --set train.fast_path.s4d_chunked_conv=false)
data=(--dataset organamnist --res 28 --data data/processed/organamnist_28.npz --meta data/processed/organamnist_28.json)
mkdir -p fp32-check
for m in vit s4d; do
    (
        run=fp32-check/train_${m}_s$train_seed
        python3 -m ssmvit train --config "$config" "${fp32[@]}" "$@" "${data[@]}" --model $m --seed "$train_seed" \
            --out-dir "$run" --no-progress &&
        python3 -m ssmvit evaluate --config "$config" "${fp32[@]}" "$@" "${data[@]}" --model $m --seed "$train_seed" \
            --out-dir "$run" &&
        python3 -m ssmvit evaluate --config "$config" "${fp32[@]}" "$@" "${data[@]}" --model $m --seed "$logits_seed" \
            --checkpoint "results/runs/organamnist_28_${m}_s$logits_seed/best.pt" \
            --out-dir "fp32-check/reeval_${m}_s$logits_seed"
        echo "$m exit $?"
    ) > "fp32-check/$m.log" 2>&1 &
done
wait
tail -n 1 fp32-check/*.log
