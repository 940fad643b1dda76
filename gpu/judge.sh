#!/usr/bin/env bash
# One device call: a counterfactually invariant classifier for a training run's world, measured beside the run's own
# classifier on the run's current G_ema (training/README.md, "Next session"; BENCHMARKS.md, "Goal 2 at 13.8 M
# images", says why).
#
#   RUN=training/faces64v2 [WORLD=2] [NAME=classifier_cf] [SET="invariance_weight=1.0 ..."] [NFIT=100000]
#   [PAPER=1] [JUDGE=FILE] bash gpu/judge.sh
#
# JUDGE=FILE measures a classifier already trained (e.g. training/faces64v2/classifier_cf.safetensors, trained on the
# CPU in stop 37) instead of training one: the call then takes a minute or two, not ~6.
#
# A CPU rehearsal (tiny sizes, a few minutes here): OUT=/tmp/j DEVICE=cpu SET="n_train=64 steps=4 n_eval=32
# invariance_weight=1.0" NFIT=2000 NEVAL=8 LEAK_ARGS="--n 4 --n-tail 200" QUALITY_N=200 bash gpu/judge.sh
#
# $OUT gets (at most 8 files): NAME.safetensors (the new classifier, ~2.2 MB), judge.log, leakage.json (both
# classifiers' counterfactual shifts and 2 % score tails), edit_NAME.json and quality_NAME.json (goal 2 and FD-clf /
# rates of the run's G_ema with the new classifier as the judge) and, with PAPER=1, edit_own_500k.json: the run's
# own classifier with InterFaceGAN's 500,000 fitted codes (2 % = 10,000 a side, the paper's) instead of 100,000,
# which separates the SVM's sampling noise from the judge's leakage.
set -euo pipefail
: "${OUT:?set by the device tool}"
RUN=${RUN:-training/faces64v2}
WORLD=${WORLD:-2}
NAME=${NAME:-classifier_cf}
SET=${SET:-invariance_weight=1.0}
NFIT=${NFIT:-100000}
DEVICE=${DEVICE:-cuda}
QUALITY_N=${QUALITY_N:-10000}
export PYTHONUNBUFFERED=1 GANINV_RESAMPLE_IMPL=composite PYTHONPATH=$PWD
exec > >(tee "$OUT/judge.log") 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
judge=$OUT/$NAME.safetensors
edit=(--faces64 --gan-run "$RUN" --num-eval "${NEVAL:-500}" --num-inverted 0 --psi 1.0 --ratios 0.02 --device "$DEVICE")

# shellcheck disable=SC2086  # SET and LEAK_ARGS are lists of words
if [[ -n "${JUDGE:-}" ]]; then
    cp "$JUDGE" "$judge"
else
    python3 gpu/classifier.py "$judge" "$WORLD" "$DEVICE" $SET
fi
python3 -m benchmarks.classifier_leakage --classifier "$RUN/classifier.safetensors" --classifier "$judge" \
    --world-version "$WORLD" --device "$DEVICE" ${LEAK_ARGS:-} --out "$OUT/leakage.json" | tail -n 40
python3 -m benchmarks.edit_evaluation "${edit[@]}" --classifier "$judge" --num-fit "$NFIT" \
    --out "$OUT/edit_$NAME.json" | tail -n 40
python3 -m benchmarks.faces64_quality --gan-run "$RUN" --classifier "$judge" --n "$QUALITY_N" --device "$DEVICE" \
    --out "$OUT/quality_$NAME.json" | tail -n 30
if [[ "${PAPER:-0}" == 1 ]]; then
    python3 -m benchmarks.edit_evaluation "${edit[@]}" --num-fit 500000 --out "$OUT/edit_own_500k.json" | tail -n 40
fi
