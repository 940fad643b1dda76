"""What the scan's hash cache saves: `scan_images` of a folder twice, the second time with the first scan's cache
(`previous=`), on a local folder and on S3 (a moto server on this machine: a stand-in with loopback latency, so
real buckets, with 10-100 ms per request, gain more).

    PYTHONPATH=. python -m benchmarks.scan_rescan --n 1000 --out benchmarks/results/scan_rescan.json

The images are procedural faces (64 px PNGs, ~4.6 KB each) written once into a temporary folder and uploaded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import markdown_table, write_json

COLUMNS = ["where", "files", "first_scan_s", "rescan_s", "hashed_on_rescan", "reused_on_rescan", "speedup"]


def time_scans(source: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    from storage.scan import scan_images

    t0 = time.perf_counter()
    first = scan_images(source, storage_options=storage_options)
    t1 = time.perf_counter()
    again = scan_images(source, storage_options=storage_options, previous=first.hash_cache)
    t2 = time.perf_counter()
    return dict(files=len(first.manifest), first_scan_s=t1 - t0, rescan_s=t2 - t1, hashed_on_rescan=again.hashed,
                reused_on_rescan=again.reused, speedup=(t1 - t0) / (t2 - t1))


def s3_rows(images: Path, port: int) -> dict[str, Any]:
    """The same folder uploaded to a moto S3 server started here."""
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(port=port, verbose=False)
    server.start()
    try:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            os.environ.setdefault(key, "benchmark")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        options = dict(client_kwargs={"endpoint_url": f"http://127.0.0.1:{port}"})
        fs = s3fs.S3FileSystem(**options)
        fs.mkdir("scan-bench")
        fs.put(sorted(str(p) for p in images.glob("*.png")), "scan-bench/faces/")
        return dict(where="S3 (moto, loopback)", **time_scans("s3://scan-bench/faces/", options))
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="images")
    p.add_argument("--port", type=int, default=5127, help="the moto server's port")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    from ganinv.datasets.procedural_faces import write_dataset

    with tempfile.TemporaryDirectory(prefix="scan-rescan-") as tmp:
        write_dataset(Path(tmp), args.n, seed=0)
        images = Path(tmp) / "images"
        rows = [dict(where="local folder", **time_scans(str(images), None)), s3_rows(images, args.port)]
    print(markdown_table(rows, COLUMNS))
    payload = dict(args=vars(args), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), rows=rows)
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
