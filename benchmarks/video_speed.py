"""Video indexing throughput (issue 14 [I]): sampled frames/s of `glimpse index` end to end against the encoder
alone on the same frames, and how much of each video was decoded — same run, same machine.

(a) encoder alone: the frames `glimpse.video.sample_video` picks, preprocessed beforehand (not timed), through
    the encoder in batches of ``--batch-size`` (the model loaded first, not timed);
(b) `Library.index` of the folder in a fresh library (model loaded first, not timed): scan, hash, sample
    (key-frame scan + seeks), preprocess, encode, catalog writes — frames/s = frames encoded / wall time.

Decoding: frames the decoder produced (key frames for the scan + frames decoded after seeks) against the frames
the videos hold. Videos: generated here (H.264, scenes of distinct pictures every few seconds, a key frame every
2 s as phones record), cached under ``--work``. The model: a ViT-B/32-shaped CLIP with random weights (speed does
not depend on the weights). Each variant runs in its own subprocess.

    python benchmarks/video_speed.py [--videos 12] [--seconds 60] [--repeat 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    have = set(flags.split(":", 1)[1].split())
    return " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile") if f in have)


def make_videos(folder: Path, count: int, seconds: float, size: tuple[int, int]) -> list[Path]:
    from video_fixtures import write_video

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / f"video_{n:02d}_{int(seconds)}s_{size[0]}x{size[1]}.mp4"
        if not path.exists():
            scenes = [3.0 + (i * 7 + n) % 5 for i in range(int(seconds // 3))]  # 3-7 s scenes
            while sum(scenes) > seconds:
                scenes.pop()
            write_video(path.with_suffix(".tmp.mp4"), scenes, fps=24, size=size, gop=48, first_scene=n)
            path.with_suffix(".tmp.mp4").rename(path)
        paths.append(path)
    return paths


def run_encoder(model_dir: str, folder: str, batch_size: int) -> dict:
    import av
    import numpy as np

    import glimpse
    from glimpse.preprocess import preprocess_image
    from glimpse.video import sample_video

    with tempfile.TemporaryDirectory() as lib_dir:
        lib = glimpse.open_library(lib_dir, model=model_dir)
        encoder = lib.encoder
        pre = lib.spec.preprocess
        pixels, decoded, total = [], 0, 0
        for path in sorted(Path(folder).glob("*.mp4")):
            scan = sample_video(path, min_side=pre.min_side)
            pixels += [preprocess_image(f.image, pre) for f in scan.frames]
            decoded += scan.frames_decoded
            with av.open(str(path)) as container:
                total += container.streams.video[0].frames
        batch = np.stack(pixels)
        encoder.encode_pixels(batch[:2])  # the session exists before the clock starts, as in (b)
        start = time.perf_counter()
        for i in range(0, len(batch), batch_size):
            encoder.encode_pixels(batch[i:i + batch_size])
        seconds = time.perf_counter() - start
        lib.close()
    return {"frames": len(batch), "seconds": seconds, "frames_decoded": decoded, "frames_in_videos": total}


def run_index(model_dir: str, folder: str, batch_size: int) -> dict:
    import glimpse

    with tempfile.TemporaryDirectory() as lib_dir:
        lib = glimpse.open_library(lib_dir, model=model_dir)
        _ = lib.encoder
        start = time.perf_counter()
        report = lib.index([folder], batch_size=batch_size)
        seconds = time.perf_counter() - start
        lib.close()
    return {"frames": report.frames, "videos": report.videos, "seconds": seconds, "failed": report.failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each video")
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT of the videos")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2, help="alternate the variants this many times (best kept)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "glimpse-bench")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=["encoder", "index"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = run_encoder if args.child == "encoder" else run_index
        print(json.dumps(run(args.model, args.folder, args.batch_size)))
        return

    from tiny_models import make_clip_b32_shaped

    width, height = (int(v) for v in args.size.split("x"))
    folder = args.work / f"videos-{args.videos}x{int(args.seconds)}s-{args.size}"
    make_videos(folder, args.videos, args.seconds, (width, height))
    model_dir = args.work / "clip-b32-random"
    if not (model_dir / "config.json").exists():
        make_clip_b32_shaped(model_dir)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    runs: dict[str, list[dict]] = {"encoder": [], "index": []}
    for _ in range(args.repeat):
        for variant in runs:
            cmd = [sys.executable, __file__, "--child", variant, "--model", str(model_dir), "--folder", str(folder),
                   "--batch-size", str(args.batch_size)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[variant].append(json.loads(out.strip().splitlines()[-1]))
    enc = min(runs["encoder"], key=lambda r: r["seconds"])
    idx = min(runs["index"], key=lambda r: r["seconds"])
    enc_fps, idx_fps = enc["frames"] / enc["seconds"], idx["frames"] / idx["seconds"]
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU flags: {cpu_flags()}",
        "load_before": load,
        "load_after": Path("/proc/loadavg").read_text().split()[:3] if load else None,
        "videos": f"{args.videos} × {args.seconds:g} s H.264 {args.size} 24 fps, key frame every 2 s",
        "frames_sampled": idx["frames"],
        "encoder_frames_per_s": round(enc_fps, 2),
        "index_frames_per_s": round(idx_fps, 2),
        "ratio_index_to_encoder": round(idx_fps / enc_fps, 3),
        "frames_decoded": enc["frames_decoded"],
        "frames_in_videos": enc["frames_in_videos"],
        "decoded_share": round(enc["frames_decoded"] / max(1, enc["frames_in_videos"]), 4),
        "runs": runs,
    }
    print(f"frames sampled: {idx['frames']} from {args.videos} videos ({summary['machine']})")
    print(f"encoder alone : {enc_fps:7.2f} frames/s")
    print(f"glimpse index : {idx_fps:7.2f} frames/s   ratio {idx_fps / enc_fps:.3f}")
    print(f"decoded       : {enc['frames_decoded']} of {enc['frames_in_videos']} frames "
          f"({100 * summary['decoded_share']:.1f}%)")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
