"""`metrics.json`, schema `ganinv-evaluation-report` version 1: the machine-readable twin of a report's index.html.

Keys are stable within a schema version (new keys may be added; renaming or removing one bumps the version). Strict
JSON: a value that could not be computed is `null`, never NaN. Means and rates are over items, never over batches.

    schema, schema_version, run, generated_at (UTC ISO 8601)
    counts:      items, done, failed, pending, failure_rate (= failed / (done + failed); null if none finished)
    quality:     {metric: {label, better ('higher'|'lower'|null), n, mean, std, median, p05, p95, min, max}} over done
                 items, for every per-item metric of the store that has values (mse, psnr, ssim, lpips,
                 clf-perceptual, final_loss, steps, seconds, ...), keyed by the store's metric names
    perceptual_metrics: names in `quality` that are perceptual distances (lpips-vgg / lpips-alex only when real LPIPS
                 weights were used; clf-perceptual = distance on the attribute classifier's features, not LPIPS)
    by_label:    {label: {kind ('binary'|'continuous'), groups: [{group ('0'/'1' or 'low'/'mid'/'high'), n,
                 range (continuous only), <metric>: mean}]}}
    failures:    count, distinct_reasons, reasons: [{reason, count, examples: [image_id]}] (most frequent first)
    distribution: {fd_clf: {name, value, n, reason}, fid: {name, value, n, reason}}: Fréchet distances between
                 originals and reconstructions; value null with a reason when not computed; n = samples per side
    throughput:  device_kind, unit ('GPU-seconds' | 'device-seconds'), timed_items, device_seconds_total,
                 device_seconds_per_image, images_per_device_second (from per-item `seconds`); from the store's run
                 log (storage/runs.py), over the inversion runs that inverted something: runs, run_items,
                 wall_seconds (their wall time, summed), images_per_second (run_items / wall_seconds), last_run (its
                 record); null when the store has no such run
    provenance:  store {url, created, ganinv_version, schema_version, num_items, chunk_items},
                 generator {sha256, source, architecture, config, num_ws}, inversion {the config, verbatim},
                 dataset {root, manifest_hash, appends, last_append}, report_code {ganinv, git}
    edits:       directions [{name, method, space, attribute, created}], edit_runs [{name, created, made_by}],
                 evaluation [rows of ganinv.directions.evaluate.evaluate_edits: direction, method, target, strength,
                 flip_rate, interference, interference_max, pixel_change, ...]
    restoration: null, or for a restoration store {task, degradation (its config), keep_observed, clean (folder or
                 null), n, against_clean: {restored | kept | baseline: {psnr | ssim: {n, mean, std}}}, observation:
                 {psnr | ssim: {n, mean, std}} (the degraded restoration vs the observation), gain_over_baseline_db}
    pivotal:     null, or for a refined store {n, rank, num_steps, loss, dtype, bytes_per_item, rows: [{metric, label,
                 pivot, tuned, gain}]} (gain > 0: tuning improved it, by ganinv.metrics.reconstruction's directions)
    refinement_passes: null, or for a store refined by `ganinv refine` [{name, target_steps, more_steps, from_steps,
                 space, complete, refined, rows: [{metric, label, before, after, gain}]}] (means over the pass's items)
    ood:         null, or {scored, basis, quantiles {p50, p90, p99}, above_099, top: [{image_id, score, index}]} (the
                 12 highest out-of-distribution scores)
    comparison:  previous_run (name or null), thresholds {name: value}, regressions [{check, metric, label,
                 previous, current, change, threshold, message}], not_compared [{check, reason}], caveats [why the
                 previous run may not be comparable: another generator, dataset or inversion config]
    figures:     {name: relative path of a PNG in the report folder}
"""

from __future__ import annotations

SCHEMA_NAME = "ganinv-evaluation-report"
SCHEMA_VERSION = 1
# Metric names, how they read and which way is better: the one registry, ganinv/item_metrics.py.
FD_CLF_NAME = "FD-clf (attribute-classifier features, not FID)"
FID_NAME = "FID (Inception-v3 pool features, torchmetrics / torch-fidelity)"
