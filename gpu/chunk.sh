#!/usr/bin/env bash
# One resumable chunk of the embedded world's GAN training, run on the device from a checkout of main
# (training/README.md says what a chunk is and how to install what it brings back).
#
#   RUN=training/faces64v2 STOP=560 [BATCH=512] [SET="KEY=VALUE ..."] [EVAL=1] [EDIT=0] [NFIT=100000] bash gpu/chunk.sh
#
# RUN     the run folder in the repository (checkpoint/, log.jsonl, config.json, classifier.safetensors)
# MIN     training minutes of this chunk (the call's 600 s must also hold start-up, compile and evaluation)
# STOP    or: stop training STOP seconds after this script started, however long the set-up took (e.g. the call's
#         timeout_s less ~40 s for the export); the evaluations then run until the call's limit
# SET     GANTrainConfig settings: all of them for a new run; a resumed run takes only the regulariser's
# CLASSIFIER_WORLD  when the run folder has no classifier.safetensors, train one for this world version first
#         (CLASSIFIER_SET: TrainClassifierConfig overrides, e.g. "n_train=256 steps=2" for a CPU rehearsal)
# EVAL    1: FD-clf and rates (faces64_quality, n 10k) and linear separability (n 20k) after training
# EDIT    1: the InterFaceGAN edit evaluation (psi 1, ratio 0.02, NFIT fits, 500 items)
# DEVICE  cuda (default) or cpu, COMPILE 1 (default) or 0: a CPU rehearsal is DEVICE=cpu COMPILE=0 EVAL=0
# ENC     an encoder run folder (e.g. training/encoder_faces64v2) trained on the same GPU beside the GAN, for the
#         G_ema the chunk starts from (`encoder_any_generator train --follow-gan`: a run of an earlier G_ema is
#         warm-started from); needs STOP, allows EVAL=1 but not EDIT=1 (8 files come back at most).
#         ENC_IMAGES (default procedural:30000:2:v2) and ENC_ARGS (more train flags, e.g. a rehearsal's
#         "--batch-size 4 --steps 4") pass through. Its output goes to chunk.log with the prefix [encoder].
#         Measured beside world 2's GAN (chunk 7, H100): the GAN fell from ~4,100 to ~3,000 img/s and trained 772
#         kimg instead of ~1,750, the encoder ran at ~1,500 img/s; encoder chunks of world 2 now run alone.
# The call carries 64 MiB at most: `bash gpu/travel.sh leave PATH...` first (training/README.md says which).
#
# $OUT gets at most 8 files: run.tar.* (the whole run folder, 15 MB parts), samples.png, chunk.log, the JSONs and
# with ENC enc.tar.* (the encoder run's files to commit). Install both with
# `benchmarks.train_chunk --install-chunk FILES_AT --run-dir RUN [--encoder-run ENC]`.
set -euo pipefail
: "${OUT:?set by the device tool}"
RUN=${RUN:-training/faces64v2}
started=$(date +%s)
length=(--minutes "${MIN:-5}"); [[ -n "${STOP:-}" ]] && length=(--until "$((started + STOP))")
DEVICE=${DEVICE:-cuda}
compile=(); [[ "${COMPILE:-1}" == 1 ]] && compile=(--compile)
export PYTHONUNBUFFERED=1 GANINV_RESAMPLE_IMPL=composite PYTHONPATH=$PWD
exec > >(tee "$OUT/chunk.log") 2>&1
mkdir -p "$RUN"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c 'import torch, PIL; print("torch", torch.__version__, "pillow", PIL.__version__)'

if [[ -n "${CLASSIFIER_WORLD:-}" && ! -f "$RUN/classifier.safetensors" ]]; then
    python3 gpu/classifier.py "$RUN/classifier.safetensors" "$CLASSIFIER_WORLD" "$DEVICE" ${CLASSIFIER_SET:-}
fi

enc_pid=
if [[ -n "${ENC:-}" ]]; then
    [[ -n "${STOP:-}" && "${EDIT:-0}" != 1 ]] || { echo "ENC needs STOP and EDIT=0 (at most 8 files come back)"; exit 2; }
    # it trains until ~45 s before STOP (whole intervals that fit), leaving the GAN's export and the tar time
    minutes=$(python3 -c "print(max(0.5, ($started + $STOP - 45 - $(date +%s)) / 60))")
    python3 -m benchmarks.encoder_any_generator train --run-dir "$ENC" --gan-run "$RUN" --follow-gan \
        --images "${ENC_IMAGES:-procedural:30000:2:v2}" --minutes "$minutes" --device "$DEVICE" ${ENC_ARGS:-} \
        --out /tmp/enc_export 2>&1 | sed -u 's/^/[encoder] /' &
    enc_pid=$!
fi

settings=()
for item in ${SET:-}; do settings+=(--set "$item"); done
python3 -m benchmarks.train_chunk --run-dir "$RUN" "${length[@]}" "${compile[@]}" ${BATCH:+--batch-size "$BATCH"} \
    "${settings[@]}" --out /tmp/chunk_export
cp /tmp/chunk_export/samples.png "$OUT/samples.png"
tar cf - -C "$RUN" . | split -b 15M - "$OUT/run.tar."  # the state comes back first: evaluations may run out of time
if [[ -n "$enc_pid" ]]; then
    wait "$enc_pid" || true  # its own lines in chunk.log say how it ended
    if [[ -d /tmp/enc_export ]]; then
        tar cf - -C /tmp/enc_export . | split -b 15M - "$OUT/enc.tar."
    else
        echo "[encoder] exported nothing: the GAN's state came back without an encoder run"
    fi
fi
kimg=$(python3 -c "from ganinv.training.checkpoint import load_checkpoint_entry as e
print(round(int(e('$RUN/checkpoint', 'images_seen')) / 1000))")

if [[ "${EVAL:-1}" == 1 ]]; then
    python3 -m benchmarks.faces64_quality --gan-run "$RUN" --n 10000 --device "$DEVICE" --out "$OUT/quality_${kimg}kimg.json" \
        | tail -n 40
    python3 -m benchmarks.separability --gan-run "$RUN" --n 20000 --device "$DEVICE" --out "$OUT/sep_${kimg}kimg.json"
fi
if [[ "${EDIT:-0}" == 1 ]]; then
    python3 -m benchmarks.edit_evaluation --faces64 --gan-run "$RUN" --num-fit "${NFIT:-100000}" --num-eval 500 \
        --num-inverted 0 --psi 1.0 --ratios 0.02 --device "$DEVICE" --out "$OUT/edit_${kimg}kimg.json" | tail -n 40
fi
