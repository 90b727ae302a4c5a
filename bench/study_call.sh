#!/usr/bin/env bash
# One GPU call: the 1-seed study of config/study-shape.yaml timed by bench/study.py (no paper: no
# LaTeX on the GPU box), then the plain fp32 step on the real OrganAMNIST-28 (ViT and S4D, seed 0,
# 5 epochs) for the accuracy check against the study's fast-path runs. Everything goes to
# OUTDIR/study.tar.gz (the device tool returns at most 8 files). Usage: bench/study_call.sh OUTDIR
set -u
out=${1:?OUTDIR}
w=$(mktemp -d)
python3 bench/study.py --config config/study-shape.yaml --seeds 0 --out "$w" --omit-from paper > "$w/study.log" 2>&1
echo "study exit $?"; grep -E "Error|Exception|error:|steps \(100%\)" "$w/study.log" | tail -n 5
cat "$w"/study_*.json
cp -r build/study-shape-1seed/results/aggregate "$w/aggregate"
tar -czf "$out/study.tar.gz" -C "$w" .  # now and again at the end: a call cut short keeps the study
fp32=(--set train.fast_path.bf16_autocast=false --set train.fast_path.fused_optimizer=false
      --set train.fast_path.compile=false --set train.fast_path.cuda_graphs=false)
for m in vit s4d; do
    python3 -m ssmvit train --config config/study-shape.yaml --set outdir=build/fp32-check "${fp32[@]}" \
        --dataset organamnist --res 28 --model $m --seed 0 --no-progress > "$w/fp32_$m.log" 2>&1 &
done
wait
for m in vit s4d; do
    tail -n 2 "$w/fp32_$m.log"
    cp build/fp32-check/results/runs/organamnist_28_${m}_s0/train_summary.json "$w/fp32_${m}_train_summary.json"
done
tar -czf "$out/study.tar.gz" -C "$w" . && ls -la "$out"
