"""Build the example behind docs/report_screenshot.png: three "nights" of hybrid inversion of held-out faces64
images into latent stores, InterFaceGAN edits evaluated on the inverted codes, then one evaluation report per night
(so the last one has trends and a previous run to compare with), and a screenshot of the last report in Chromium.

    PYTHONPATH=. python docs/make_report_example.py --work runs/report_example            # all stages
    # stores and edit results are kept in --work: a second run only re-renders the reports and the screenshot

Night 1 runs 50 optimisation steps, night 2 runs 100, night 3 runs 30 and also meets two truncated uploads, so the
last report flags regressions (PSNR, SSIM, failure rate) against night 2. CPU, one thread: about 10 minutes.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NIGHTS = (("2026-11-23", 50, 0), ("2026-11-24", 100, 0), ("2026-11-25", 30, 2))  # (run, steps, broken uploads)
NUM_IMAGES = 48
SCREENSHOT_HEIGHT = 1665  # down to the first grid's caption
BATCH = 16
STRENGTHS = (-10.0, -5.0, 5.0, 10.0)  # unit directions in W, where |w - w_avg| is about 11 (psi 1) for faces64
METRICS = ("mse", "psnr", "ssim", "clf_perceptual", "final_loss", "steps", "seconds")


def write_heldout(work: Path) -> Path:
    """Held-out faces: world seed 1 (the GAN saw seed 0 only)."""
    from ganinv.datasets.procedural_faces import write_dataset

    data = work / "heldout"
    if not (data / "attributes.csv").exists():
        write_dataset(data, NUM_IMAGES, seed=1, workers=2)
    return data


def manifest_for(data: Path, broken: int):
    from storage import Manifest
    from storage.schema import file_sha256

    with open(data / "attributes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    records = [dict(image_id=r["image_id"].removesuffix(".png"), path=f"images/{r['image_id']}",
                    source_sha256=file_sha256(data / "images" / r["image_id"]),
                    labels={k: float(v) for k, v in r.items() if k != "image_id"}) for r in rows]
    for i in range(broken):  # a truncated upload: the first 200 bytes of a real PNG
        path = data / "uploads" / f"upload{i}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes((data / "images" / rows[i]["image_id"]).read_bytes()[:200 + 37 * i])
        records.append(dict(image_id=f"upload{i}", path=f"uploads/upload{i}.png", source_sha256=file_sha256(path)))
    return Manifest.from_records(records, root=str(data))


def load_target(path: str) -> torch.Tensor:
    from PIL import Image

    from ganinv.utils.images import from_pil

    with Image.open(path) as image:
        return from_pil(image)


def invert_night(work: Path, data: Path, run: str, steps: int, broken: int) -> Path:
    from ganinv.generators import load_generator_and_identity
    from ganinv.inversion.hybrid import HYBRID_CONFIG
    from ganinv.models.encoder import load_encoder
    from storage import GeneratorIdentity, LatentStore

    url = work / "stores" / f"{run}.zarr"
    if url.exists() and not LatentStore.open(str(url)).pending_shards():
        return url
    (G, sha256), E = load_generator_and_identity("faces64"), load_encoder("faces64")
    config = dataclasses.replace(HYBRID_CONFIG, num_steps=steps, loss="clf-perceptual")
    identity = GeneratorIdentity(sha256=sha256, config=G.init_kwargs, source="faces64")
    store = LatentStore.open_or_create(str(url), manifest=manifest_for(data, broken), num_ws=G.num_ws,
                                       w_dim=G.w_dim, generator=identity, config=config.to_dict(),
                                       chunk_items=BATCH, thumbnail_size=G.img_resolution, metrics=METRICS)
    started = time.perf_counter()
    for shard in store.pending_shards():
        inputs = store.read_shard_inputs(shard)
        store.write_shard(inputs, invert_shard(G, E, config, inputs, store.layout))
        print(f"{run}: shard {shard.index} done after {time.perf_counter() - started:.0f} s", flush=True)
    return url


def invert_shard(G, E, config, inputs, layout):
    """Items that cannot be read fail with the reader's message; the rest are inverted as one batch."""
    from ganinv.inversion import hybrid
    from ganinv.utils.images import to_uint8
    from storage import ShardResult, Status

    n = len(inputs)
    targets, errors = [], [""] * n
    for i, path in enumerate(inputs.paths):
        try:
            targets.append(load_target(path))
        except Exception as err:  # noqa: BLE001 - any unreadable input is a per-item failure
            errors[i] = f"unreadable image: {type(err).__name__}: {err}"
    ok = [i for i in range(n) if not errors[i]]
    ws = np.full((n, layout.num_ws, layout.w_dim), np.nan, np.float32)
    thumbs = np.zeros((n, layout.thumbnail_size, layout.thumbnail_size, 3), np.uint8)
    metrics = {m: np.full(n, np.nan, np.float32) for m in METRICS}
    status = np.array([Status.FAILED if e else Status.DONE for e in errors], np.uint8)
    if not ok:
        return ShardResult(ws=ws, status=status, error=errors, metrics=metrics, thumbnails=thumbs)
    start = time.perf_counter()
    result = hybrid(G, E, torch.stack(targets), config, seed=[int(inputs.indices[i]) for i in ok])
    seconds = (time.perf_counter() - start) / len(ok)
    ws[ok] = result.ws.numpy()
    thumbs[ok] = to_uint8(result.images).permute(0, 2, 3, 1).numpy()
    for name, key in (("mse", "mse"), ("psnr", "psnr"), ("ssim", "ssim"), ("clf_perceptual", "clf-perceptual")):
        metrics[name][ok] = result.metrics[key].numpy()
    metrics["final_loss"][ok] = result.losses.numpy()
    metrics["steps"][ok] = config.num_steps
    metrics["seconds"][ok] = seconds
    return ShardResult(ws=ws, status=status, error=errors, metrics=metrics, thumbnails=thumbs)


def edit_evaluation(work: Path, store_url: Path) -> tuple[Path, list[tuple[str, Path]]]:
    """InterFaceGAN directions fitted on sampled codes, evaluated and rendered on the inverted corpus."""
    from ganinv import edit
    from ganinv.directions.evaluate import evaluate_edits
    from ganinv.directions.interfacegan import fit_directions, sample_and_score
    from ganinv.generators import load_generator
    from ganinv.models.attributes import load_classifier
    from ganinv.utils.images import save_image_grid
    from storage import LatentStore, Status

    out = work / "edits"
    rows_path = out / "edit_evaluation.json"
    galleries = [(f"{a.replace('_', ' ')}: strengths {STRENGTHS[0]:g}, {STRENGTHS[1]:g}, 0, {STRENGTHS[2]:g}, "
                  f"{STRENGTHS[3]:g} (columns) on six inverted items (rows)", out / f"gallery_{a}.png")
                 for a in ("smiling", "eyeglasses", "blond_hair")]
    if rows_path.exists():
        return rows_path, galleries
    out.mkdir(parents=True, exist_ok=True)
    G, clf = load_generator("faces64"), load_classifier("builtin")
    scorer = lambda img: {k: v for k, v in clf.predict(img).items()}  # noqa: E731
    codes, scores = sample_and_score(G, scorer, 3000, seed=0, attributes=None)
    binary = {a: (scores[a] > 0.5).astype(np.float64) for a in ("smiling", "eyeglasses", "blond_hair")}
    directions = fit_directions(codes, binary, conditions={"eyeglasses": ["blond_hair"]})
    store = LatentStore.open(str(store_url))
    done = store.array("status")[:] == Status.DONE
    ws = torch.from_numpy(store.array("ws")[:][done][:32])
    rows = evaluate_edits(G, scorer, ws, directions, STRENGTHS)
    rows_path.write_text(json.dumps(rows, indent=1, allow_nan=True))
    strengths = [*STRENGTHS[:2], 0.0, *STRENGTHS[2:]]
    by_name = {d.name: d for d in directions}
    for (title, path), attr in zip(galleries, ("smiling", "eyeglasses", "blond_hair")):
        edited = edit.apply(ws[:6], by_name[f"interfacegan-{attr}"], strengths)  # [6, S, num_ws, w_dim]
        with torch.no_grad():
            images = G.synthesis(edited.reshape(-1, *edited.shape[2:]), noise_mode="const")
        save_image_grid(images, path, nrow=len(strengths))
    return rows_path, galleries


def build_reports(work: Path, stores: list[tuple[str, Path]], rows_path: Path, galleries) -> Path:
    from report import ReportConfig, build_report

    root = work / "reports"
    shutil.rmtree(root, ignore_errors=True)
    result = None
    for run, url in stores:
        last = run == stores[-1][0]
        result = build_report(str(url), root, ReportConfig(run=run, edit_rows=rows_path if last else None,
                                                           galleries=galleries if last else ()))
        print(f"{run}: {result.path} ({len(result.regressions)} regressions)")
    return result.path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("runs/report_example"))
    p.add_argument("--stage", choices=("all", "invert"), default="all", help="invert: stop after the stores and edits")
    p.add_argument("--screenshot", type=Path, default=Path(__file__).with_name("report_screenshot.png"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = write_heldout(args.work)
    stores = [(run, invert_night(args.work, data, run, steps, broken)) for run, steps, broken in NIGHTS]
    rows_path, galleries = edit_evaluation(args.work, stores[-1][1])
    if args.stage == "invert":
        return
    index = build_reports(args.work, stores, rows_path, galleries)
    from PIL import Image

    from report.browser import open_report

    full = args.work / "report_full_page.png"
    check = open_report(index, screenshot=full)
    print(json.dumps(dataclasses.asdict(check), indent=1))
    if check.broken_images or check.console_errors or check.failed_requests:
        raise SystemExit("the report did not render cleanly: see above")
    with Image.open(full) as page:  # the README shows the top: banner, headline numbers, quality, first grid
        page.crop((0, 0, page.width, min(page.height, SCREENSHOT_HEIGHT))).save(args.screenshot, optimize=True)
    print(f"wrote {args.screenshot} (top {SCREENSHOT_HEIGHT} px of {full})")


if __name__ == "__main__":
    main()
