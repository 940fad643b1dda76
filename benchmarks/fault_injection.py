"""Fault injection on a real latent store (issue 24): each fault is injected into a store of real inversions (a tiny
seeded generator, CPU, the shard worker `runtime.shard.run_shard`), the store's own recovery runs (a rerun,
`verify(repair=True)` + rerun, `rebuild_root`, the lease's takeover), and the result is compared item by item with
an uninterrupted reference run. Processes die at random points: at a random one of their store writes (just before
or just after it; every chunk, metadata and root write of zarr is counted) or at a random moment (SIGKILL); bytes are
flipped in random chunks. Reported per fault: items lost (not done, or any byte of ws, thumbnails, status, id or
error other than the reference's), items duplicated (an input stored twice, or more items than inputs), corrupt
chunks injected and detected.

    .venv/bin/python -m benchmarks.fault_injection --out benchmarks/results/fault_injection_cpu.json
    .venv/bin/python -m benchmarks.fault_injection --only "random store write" --trials 4   # a subset

About 10 minutes on two CPU cores. docs/reliability.md has the table and what each fault is.
"""

from __future__ import annotations

import argparse
import inspect
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FAST = {"num_steps": 4, "loss": "mse", "w_avg_samples": 200, "space": "w+"}
ITEMS, SHARD = 24, 4
COMPARED = ("ws", "thumbnails", "status", "image_ids", "errors")


# ---------------------------------------------------------------------------------------------------------- world
def make_world(root: Path) -> dict[str, str]:
    """The images (smooth colour fields, one of them undecodable), a tiny generator file, an empty store URL."""
    from PIL import Image

    from benchmarks.common import tiny_generator
    from ganinv.generators import save_generator

    images = root / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(ITEMS - 1):
        coarse = rng.integers(0, 256, size=(2, 2, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((16, 16), Image.Resampling.BILINEAR).save(images / f"img{i:03d}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # fails to decode: recorded as failed
    generator = root / "generator.safetensors"
    save_generator(tiny_generator(16, seed=3), generator, source="benchmarks/fault_injection.py")
    return {"images": str(images), "generator": str(generator)}


def prepare(world: dict[str, str], url: str):
    """Steps 0-3 of the flow and its numerics (one thread, this process), as a store-only caller makes them."""
    from runtime.config import ExecutionOptions, InvertConfig
    from runtime.coordinator import check_settings, open_store, plan
    from runtime.numerics import record_for_this_process
    from storage.scan import scan_images

    scan = scan_images(world["images"])
    store, _ = open_store(url, scan.manifest, check_settings(world["generator"], InvertConfig(inversion=FAST)),
                          chunk_items=SHARD)
    plan(store, scan.manifest)
    record_for_this_process(store, ExecutionOptions(threads=1))
    return store


def invert_pending(world: dict[str, str], url: str, *, batch_size: int = 4) -> None:
    from runtime.config import ExecutionOptions
    from runtime.shard import run_shard
    from storage import LatentStore

    for shard in LatentStore.open(url, "r+").pending_shards():
        run_shard(url, shard.index, generator=world["generator"], execution=ExecutionOptions(batch_size=batch_size))


def contents(url: str) -> dict[str, np.ndarray]:
    from storage import LatentStore

    store = LatentStore.open(url)
    return {"ws": store.ws(), "thumbnails": store.thumbnails(), "status": store.status(),
            "image_ids": store.image_ids(),
            "errors": store.errors(), "sha": store.source_sha256(), "attempts": store.attempts()}


def outcome(url: str, reference: dict[str, np.ndarray]) -> dict[str, int]:
    """Items lost (missing, not finished, or other bytes than the reference) and duplicated (stored twice)."""
    got = contents(url)
    ref_index = {str(i): k for k, i in enumerate(reference["image_ids"])}
    lost = 0
    for image_id, k in ref_index.items():
        rows = np.flatnonzero(got["image_ids"] == image_id)
        if len(rows) == 0:
            lost += 1
            continue
        r = rows[0]
        same = all(np.array_equal(got[name][r], reference[name][k], equal_nan=got[name].dtype.kind == "f")
                   for name in COMPARED)
        lost += not same
    duplicated = (len(got["sha"]) - len(set(map(str, got["sha"])))) + max(0, len(got["sha"]) - len(ref_index))
    return {"items": len(ref_index), "lost": lost, "duplicated": duplicated,
            "max_attempts": int(got["attempts"].max())}


# ---------------------------------------------------------------------------------------------------------- faults
def flip_bytes(path: Path, rng: random.Random, count: int = 4) -> None:
    data = bytearray(path.read_bytes())
    for offset in rng.sample(range(len(data)), min(count, len(data))):
        data[offset] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def corrupt_chunks(url: str, arrays: tuple[str, ...], rng: random.Random, *, per_array: int = 2) -> int:
    """Flips bytes in `per_array` random chunk files of each array; returns how many chunks were damaged."""
    damaged = 0
    for name in arrays:
        chunks = sorted(p for p in (Path(url) / name / "c").rglob("*") if p.is_file())
        for path in rng.sample(chunks, min(per_array, len(chunks))):
            flip_bytes(path, rng)
            damaged += 1
    return damaged


def scenario_corruption(world, url, reference, rng, *, trials: int = 4) -> dict[str, Any]:
    """Flipped bytes in random chunks of every item array; `store-verify --repair`, then the next run. Each trial
    starts from the finished store again."""
    from storage import LatentStore

    arrays = ("ws", "thumbnails", "metrics/mse", "metrics/psnr", "status", "error", "attempts")
    finished = url + ".finished"
    shutil.copytree(url, finished)
    rows, injected, detected, requeued, ok_after = [], 0, 0, 0, 0
    for _ in range(trials):
        shutil.rmtree(url)
        shutil.copytree(finished, url)
        injected += corrupt_chunks(url, arrays, rng)
        detected += len(LatentStore.open(url).verify().corrupt_chunks)
        requeued += len(LatentStore.open(url, "r+").verify(repair=True).requeued)
        invert_pending(world, url)
        ok_after += LatentStore.open(url).verify().ok
        rows.append(outcome(url, reference))
    shutil.rmtree(finished)
    return {"injected_chunks": injected, "detected_chunks": detected, "requeued": requeued,
            "verify_ok_after": f"{ok_after}/{trials}", **trials_outcome(rows)}


def scenario_corrupt_status_rerun_only(world, url, reference, rng) -> dict[str, Any]:
    """No store-verify: planning must rebuild the status chunk and reset the ws chunk a worker would read."""
    from runtime.coordinator import plan
    from storage import LatentStore
    from storage.scan import scan_images

    store = LatentStore.open(url, "r+")
    store.array("status")[9] = 0  # shard 2 half done: its worker will read (and write back) its chunks
    flip_bytes(Path(url) / "status" / "c" / "0", rng)
    flip_bytes(Path(url) / "ws" / "c" / "2" / "0" / "0", rng)
    planned = plan(LatentStore.open(url, "r+"), scan_images(world["images"]).manifest)
    invert_pending(world, url)
    return {"injected_chunks": 2, "detected_chunks": sum(r.startswith("repaired") for r in planned.repairs),
            "verify_ok_after": LatentStore.open(url).verify().ok}


def scenario_truncated_and_deleted_chunks(world, url, reference, rng) -> dict[str, Any]:
    from storage import LatentStore

    ws_chunks = sorted(p for p in (Path(url) / "ws" / "c").rglob("*") if p.is_file())
    victim, gone = rng.sample(ws_chunks, 2)
    victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 2])
    gone.unlink()  # reads as the fill value (NaN): verify sees done items without codes
    found = LatentStore.open(url).verify()
    LatentStore.open(url, "r+").verify(repair=True)
    invert_pending(world, url)
    return {"injected_chunks": 2, "detected_chunks": len(found.corrupt_chunks) + (len(found.bad_items) > 0),
            "verify_ok_after": LatentStore.open(url).verify().ok}


def scenario_worker_killed(world, url, reference, rng, *, at: str) -> dict[str, Any]:
    """A worker process dies (os._exit) while writing array `at` of its first shard; the run then goes on."""
    code = (f"import os, sys; sys.path.insert(0, {str(REPO)!r}); from storage import shards\n"
            "write = shards.write_region\n"
            "def dying(store, name, rows, value):\n"
            f"    os._exit(9) if name == {at!r} else write(store, name, rows, value)\n"
            "shards.write_region = dying\n"
            "from runtime.config import ExecutionOptions; from runtime.shard import run_shard\n"
            f"run_shard({url!r}, 1, generator={world['generator']!r}, execution=ExecutionOptions(batch_size=4))\n")
    died = subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode
    invert_pending(world, url, batch_size=3)
    return {"worker_exit_code": died}


def half_done(world: dict[str, str], url: str) -> None:
    """Makes `url` a store of the first half of the images, all inverted (the second half is new to it)."""
    images = Path(world["images"])
    later = images.parent / "later"
    later.mkdir()
    half = sorted(images.glob("*.png"))[ITEMS // 2:]
    for path in half:
        path.rename(later / path.name)
    shutil.rmtree(url)
    prepare(world, url)
    invert_pending(world, url)
    for path in half:
        (later / path.name).rename(images / path.name)
    later.rmdir()


def scenario_coordinator_killed_in_append(world, url, reference, rng) -> dict[str, Any]:
    """The coordinator dies after resizing the arrays for new items, before the commit; the next run appends."""
    from storage import LatentStore
    from storage.scan import scan_images

    half_done(world, url)
    code = (f"import os, sys; sys.path.insert(0, {str(REPO)!r}); from storage import growth\n"
            "growth.commit = lambda *a, **k: os._exit(9)\n"
            "from storage import LatentStore; from storage.scan import scan_images\n"
            f"LatentStore.open({url!r}, 'r+').append(scan_images({world['images']!r}).manifest)\n")
    died = subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode
    store = LatentStore.open(url, "r+")
    store.append(scan_images(world["images"]).manifest)
    invert_pending(world, url)
    return {"coordinator_exit_code": died}


# A process that dies (os._exit: no cleanup, as SIGKILL) at its k-th write to the store, just before or just after it.
# Every chunk, array metadata and root write of zarr goes through `LocalStore.set`, so k picks a point anywhere in the
# write sequence of a shard worker or of an append.
DIE_AT_WRITE = """
import os, sys
sys.path.insert(0, {repo!r})
from zarr.storage import LocalStore
_set, _count = LocalStore.set, [0]
async def _set_or_die(self, key, value, *args, **kwargs):
    _count[0] += 1
    n = _count[0]  # writes run concurrently: this one's number, not the count after the await
    if n == {k} and {before}:
        os._exit(9)
    await _set(self, key, value, *args, **kwargs)
    if n == {k}:
        os._exit(9)
LocalStore.set = _set_or_die
import atexit
atexit.register(lambda: print('writes', _count[0]))
"""
WORKER = ("from runtime.config import ExecutionOptions; from runtime.shard import run_shard; from storage import "
          "LatentStore\nfor shard in LatentStore.open({url!r}, 'r+').pending_shards():\n"
          "    run_shard({url!r}, shard.index, generator={generator!r}, execution=ExecutionOptions(batch_size=4))\n")
APPEND = ("from storage import LatentStore; from storage.scan import scan_images\n"
          "LatentStore.open({url!r}, 'r+').append(scan_images({images!r}).manifest)\n")


def run_dying(body: str, *, k: int, before: bool, **names: str) -> tuple[int, int | None]:
    """Runs `body` in a fresh process that dies at its k-th store write (k=0: never); (exit code, writes made)."""
    code = DIE_AT_WRITE.format(repo=str(REPO), k=k, before=before) + body.format(**names)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    if done.returncode not in (0, 9):
        raise RuntimeError(f"the dying process failed otherwise (exit {done.returncode}): {done.stderr[-2000:]}")
    writes = [int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("writes ")]
    return done.returncode, (writes[0] if writes else None)


def kill_points(rng: random.Random, total: int, trials: int) -> list[tuple[int, bool]]:
    """`trials` distinct (k, before) points spread over writes 1..total."""
    points = [(k, before) for k in range(1, total + 1) for before in (True, False)]
    return sorted(rng.sample(points, min(trials, len(points))))


def trials_outcome(rows: list[dict[str, int]]) -> dict[str, int]:
    return {"trials": len(rows), "lost": sum(r["lost"] for r in rows),
            "duplicated": sum(r["duplicated"] for r in rows), "max_attempts": max(r["max_attempts"] for r in rows)}


def die_and_recover(url: str, start: str, reference, rng: random.Random, trials: int, body: str,
                    recover: Callable[[], None], **names: str) -> dict[str, Any]:
    """`trials` times from a copy of the store `start`: `body` dies at a random store write of its own (before or
    after it), then `recover()` runs and the store is compared with `reference`."""
    _, total = run_dying(body, k=0, before=False, url=url, **names)  # counts the writes of a whole run
    rows = []
    for k, before in kill_points(rng, total, trials):
        shutil.rmtree(url)
        shutil.copytree(start, url)
        code, _ = run_dying(body, k=k, before=before, url=url, **names)
        assert code == 9, (k, before)
        recover()
        rows.append(outcome(url, reference))
    shutil.rmtree(start)
    return {"writes_per_run": total, **trials_outcome(rows)}


def scenario_worker_dies_at_random_writes(world, url, reference, rng, *, trials: int = 12) -> dict[str, Any]:
    """A worker inverting every shard dies at a random store write; the next run (batches of 3) finishes."""
    shutil.copytree(url, url + ".fresh")
    return die_and_recover(url, url + ".fresh", reference, rng, trials, WORKER,
                           lambda: invert_pending(world, url, batch_size=3), generator=world["generator"])


def scenario_worker_sigkilled_at_random_times(world, url, reference, rng, *, trials: int = 8) -> dict[str, Any]:
    """A worker inverting every shard gets SIGKILL at a random moment of its run; the next run finishes."""
    fresh = url + ".fresh"
    shutil.copytree(url, fresh)
    code = f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + WORKER.format(url=url, generator=world["generator"])
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)  # how long a whole run takes
    duration = time.perf_counter() - t0
    rows, killed = [], 0
    for _ in range(trials):
        shutil.rmtree(url)
        shutil.copytree(fresh, url)
        worker = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
        time.sleep(rng.uniform(0.0, duration))
        worker.send_signal(signal.SIGKILL)
        killed += worker.wait() == -signal.SIGKILL
        invert_pending(world, url, batch_size=3)
        rows.append(outcome(url, reference))
    shutil.rmtree(fresh)
    return {"run_s": round(duration, 2), "killed_mid_run": killed, **trials_outcome(rows)}


def scenario_coordinator_dies_at_random_writes_of_an_append(world, url, reference, rng, *, trials: int = 12
                                                            ) -> dict[str, Any]:
    """Half the images are in the store (done); the coordinator appending the other half dies at a random store
    write; the next run appends again and inverts what is pending."""
    half_done(world, url)
    shutil.copytree(url, url + ".half")

    def recover() -> None:
        from storage import LatentStore
        from storage.scan import scan_images

        LatentStore.open(url, "r+").append(scan_images(world["images"]).manifest)
        invert_pending(world, url)

    return die_and_recover(url, url + ".half", reference, rng, trials, APPEND, recover, images=world["images"])


def scenario_root_lost(world, url, reference, rng) -> dict[str, Any]:
    from storage import LatentStore, StoreDamagedError

    (Path(url) / "zarr.json").write_text('{"zarr_format": 3, "node_ty')
    try:
        LatentStore.open(url, "r+")
        refused = False
    except StoreDamagedError:
        refused = True
    LatentStore.rebuild_root(url)
    return {"garbage_root_refused": refused}


def scenario_lease_garbage_and_dead_holder(world, url, reference, rng) -> dict[str, Any]:
    from storage import LatentStore

    code = (f"import os, sys; sys.path.insert(0, {str(REPO)!r}); from storage import LatentStore\n"
            f"LatentStore.open({url!r}, 'r+').acquire_lease('killed-run', ttl_s=3600); os._exit(9)\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO)
    t0 = time.perf_counter()
    LatentStore.open(url, "r+").acquire_lease("next-run", ttl_s=60).release()
    takeover_s = time.perf_counter() - t0
    record = sorted((Path(url) / "lease").glob("*/zarr.json"))[-1]
    record.write_bytes(b"")
    LatentStore.open(url, "r+").break_lease()
    return {"dead_holder_takeover_s": round(takeover_s, 3), "empty_record_broken": True}


def scenario_creation_race(world, url, reference, rng, *, trials: int = 12) -> dict[str, Any]:
    """Three processes create and append one store at once, `trials` times; every store must be consistent."""
    from storage import LatentStore
    from storage.scan import scan_images

    manifest = scan_images(world["images"]).manifest
    root = Path(url).parent / "race"
    root.mkdir()
    ctx = multiprocessing.get_context("spawn")
    inconsistent = refused = 0
    with ctx.Manager() as manager:
        for trial in range(trials):
            barrier = manager.Barrier(3)
            target = str(root / f"trial-{trial}.zarr")
            with ctx.Pool(3) as pool:
                results = pool.map(_race_entry, [(target, manifest, rank, barrier) for rank in range(3)])
            refused += results.count("refused")
            store = LatentStore.open(target)
            ids = [str(i) for i in store.image_ids()]
            consistent = (store.verify().ok and len(set(ids)) == len(ids) == len(manifest)
                          and all(p.endswith(i) for p, i in zip(store.paths(), ids)) and "error" not in results)
            inconsistent += not consistent
    return {"trials": trials, "inconsistent_stores": inconsistent, "runs_refused_cleanly": refused}


def _race_entry(args: tuple) -> str:
    url, manifest, rank, barrier = args
    from storage import LatentStore, LeaseHeldError

    barrier.wait()
    try:
        with LatentStore.take_lease(url, f"run-{rank}", ttl_s=60):
            store = LatentStore.open_or_create(url, manifest=manifest, num_ws=4, w_dim=8, chunk_items=SHARD,
                                               generator={"sha256": "0" * 64}, config={"race": True},
                                               run_id=f"run-{rank}")
            store.append(manifest)
        return "ok"
    except LeaseHeldError:
        return "refused"
    except Exception:  # noqa: BLE001 - counted as an inconsistency
        return "error"


def scenario_fifo_in_dataset(world, url, reference, rng) -> dict[str, Any]:
    """A FIFO named like an image joins the dataset: the scan must finish and set it aside."""
    fifo = Path(world["images"]) / "zzz-fifo.png"
    os.mkfifo(fifo)
    try:
        code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from storage.scan import scan_images\n"
                f"s = scan_images({world['images']!r}); print(len(s.manifest), [x.reason for x in s.skipped])")
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    finally:
        fifo.unlink()
    return {"scan_finished": done.returncode == 0, "scan_output": done.stdout.strip()[:200]}


SCENARIOS: dict[str, tuple[str, Callable[..., dict]]] = {
    "4 flipped bytes in each of 2 random chunks of ws, thumbnails, 2 metrics, status, error, attempts; "
    "store-verify --repair, then the next run": ("finished", scenario_corruption),
    "flipped bytes in a status chunk and in a ws chunk of a half-done shard; the next run alone":
        ("finished", scenario_corrupt_status_rerun_only),
    "a ws chunk truncated, another deleted": ("finished", scenario_truncated_and_deleted_chunks),
    "worker killed while writing ws": ("fresh", lambda *a: scenario_worker_killed(*a, at="ws")),
    "worker killed after its data, before status": ("fresh", lambda *a: scenario_worker_killed(*a, at="status")),
    "coordinator killed in an append (before the commit)": ("fresh", scenario_coordinator_killed_in_append),
    "worker dies at a random store write, before or after it":
        ("fresh", scenario_worker_dies_at_random_writes),
    "worker gets SIGKILL at a random moment of its run": ("fresh", scenario_worker_sigkilled_at_random_times),
    "coordinator dies at a random store write of an append":
        ("fresh", scenario_coordinator_dies_at_random_writes_of_an_append),
    "garbage root zarr.json": ("finished", scenario_root_lost),
    "lease holder killed; an empty lease record": ("finished", scenario_lease_garbage_and_dead_holder),
    "three runs create one store at once": ("finished", scenario_creation_race),
    "a FIFO named like an image in the dataset": ("finished", scenario_fifo_in_dataset),
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", default=None,
                        help="run only the faults whose description contains this text (repeatable)")
    parser.add_argument("--trials", type=int, default=None, help="trials of each repeated fault (default: its own)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="fault_injection_"))
    rows = []
    try:
        world = make_world(root / "world")
        reference_url = str(root / "reference.zarr")
        prepare(world, reference_url)
        fresh_url = str(root / "fresh.zarr")
        shutil.copytree(reference_url, fresh_url)  # prepared, nothing inverted
        invert_pending(world, reference_url)
        reference = contents(reference_url)
        for name, (start, run) in SCENARIOS.items():
            if args.only and not any(text in name for text in args.only):
                continue
            t0 = time.perf_counter()
            trial_world = {**world, "images": str(root / f"images-{len(rows)}")}
            shutil.copytree(world["images"], trial_world["images"])
            url = str(root / f"trial-{len(rows)}.zarr")
            shutil.copytree(reference_url if start == "finished" else fresh_url, url)
            repeat = {"trials": args.trials} if args.trials and "trials" in inspect.signature(run).parameters else {}
            details = run(trial_world, url, reference, rng, **repeat)
            row = {"fault": name, **outcome(url, reference), **details, "seconds": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    from benchmarks.common import device_facts, write_json

    payload = {"items": ITEMS, "shard": SHARD, "seed": args.seed, **device_facts(torch.device("cpu")),
               "cores": os.cpu_count(), "rows": rows}
    if args.out:
        write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
