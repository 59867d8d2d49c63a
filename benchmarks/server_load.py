"""Server load check (loopback only, bounded): N concurrent clients search for S seconds, twice.

Baseline: the clients alone. Measured: the same load while an indexing job (POST /api/index) runs.
Reports errors, p50/p99 latency and QPS of each phase, and the ratios measured/baseline.

    python benchmarks/server_load.py                    # 50 clients, 30 s per phase, CLIP-B/32-shaped random model
    python benchmarks/server_load.py --model tiny --clients 20 --seconds 10    # a quick check

Uses random-weight models built like tests/tiny_models.py (no downloads) and synthetic photos.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

QUERIES = ["a dog on the beach", "red car", "sunset over mountains", "a cat +sleeping", "city at night -people",
           "two people walking", "green forest", "a bowl of fruit"]


def load(served, clients: int, seconds: float) -> dict:
    """``clients`` threads, each with one keep-alive connection, searching until ``seconds`` pass."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(served.host, served.port, timeout=120)
        i = n
        while time.monotonic() < stop:
            q = QUERIES[i % len(QUERIES)].replace(" ", "%20").replace("+", "%2B")
            i += 1
            t0 = time.perf_counter()
            try:
                conn.request("GET", f"/api/search?q={q}&k=20")
                response = conn.getresponse()
                body = response.read()
                ok = response.status == 200 and json.loads(body)["results"]
            except Exception as exc:  # count, reconnect, go on
                ok = False
                body = repr(exc).encode()
                conn.close()
                conn = http.client.HTTPConnection(served.host, served.port, timeout=120)
            elapsed = time.perf_counter() - t0
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors.append(body[:200].decode("utf-8", "replace"))
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(latencies), "errors": len(errors), "first_errors": errors[:3],
        "qps": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1) if ordered else None,
        "seconds": round(wall, 1),
    }


def _call(served, method: str, path: str, body: bytes | None = None) -> dict:
    conn = http.client.HTTPConnection(served.host, served.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers={"content-type": "application/json"})
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", choices=["b32", "tiny"], default="b32")
    parser.add_argument("--images", type=int, default=40, help="images indexed before the run")
    parser.add_argument("--new-images", type=int, default=400, help="images the job indexes during the run")
    args = parser.parse_args()

    import glimpse
    from conftest import make_photo
    from glimpse.server.app import create_app
    from glimpse.settings import LibrarySettings
    from server_harness import serve
    from tiny_models import make_clip_b32_shaped, make_tiny_clip

    work = Path(tempfile.mkdtemp(prefix="glimpse-load-"))
    model = (make_clip_b32_shaped if args.model == "b32" else make_tiny_clip)(work / "model")
    root = work / "root"
    for i in range(args.images):
        make_photo(root / "old" / f"{i:05d}.jpg", seed=i, size=(320, 240))
    with glimpse.open_library(work / "lib", model=str(model)) as lib:
        lib.index([root])
    for i in range(args.new_images):
        make_photo(root / "new" / f"{i:05d}.jpg", seed=10_000 + i, size=(320, 240))

    served = serve(create_app(LibrarySettings(work / "lib", str(model))))
    try:
        baseline = load(served, args.clients, args.seconds)
        job = _call(served, "POST", "/api/index", b"{}")
        measured = load(served, args.clients, args.seconds)
        after = _call(served, "GET", f"/api/jobs/{job['id']}")
        served.app.state.service.jobs.wait_idle()  # let the job end before the process does
    finally:
        served.stop()
    result = {
        "clients": args.clients, "seconds_per_phase": args.seconds, "model": args.model,
        "library_images": args.images, "job_images": args.new_images,
        "baseline_no_job": baseline, "during_indexing": measured,
        "job_after_phase": {k: after[k] for k in ("state", "done", "total")},
        "ratio_p50": round(measured["p50_ms"] / baseline["p50_ms"], 2) if baseline["p50_ms"] else None,
        "ratio_qps": round(measured["qps"] / baseline["qps"], 2) if baseline["qps"] else None,
    }
    print(json.dumps(result, indent=2))
    if baseline["errors"] or measured["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
