"""``glimpse bench``: per-stage latency, images/s, CPU load and peak memory of each model, side by side.

Each model is measured in its own child process, so peak memory (``ru_maxrss``) and imports (torch or
not) belong to that model alone. Stages:

* ``load``    create the encoder and run one warm-up batch (ms in total, ``img/s`` 0)
* ``decode``  file -> preprocessed ``float32[3, H, W]`` (JPEG draft decode + resize + normalise), one thread
* ``encode``  the image tower alone on preprocessed batches of ``batch_size``
* ``text``    one text query (batch 1), the latency a search pays
* ``total``   ``Library.index`` end to end into a fresh library (decode threads overlapping the encoder)

CPU load is process CPU time / wall time / cores x 100 (100 % = every core busy).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from glimpse.errors import GlimpseError, UserInputError

QUERIES = ("a photo of a dog", "a red car parked on a beach at sunset", "一只猫", "two people hiking in the mountains")


@dataclass
class Stage:
    """One measured stage: ``items`` processed in ``seconds`` wall using ``cpu_seconds`` of CPU."""

    name: str
    items: int
    seconds: float
    cpu_seconds: float

    @property
    def ms_per_item(self) -> float:
        return 1000.0 * self.seconds / max(self.items, 1)

    @property
    def per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 and self.name != "load" else 0.0

    @property
    def cpu_percent(self) -> float:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return 100.0 * self.cpu_seconds / max(self.seconds, 1e-9) / cores

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ms_per_item": self.ms_per_item, "per_second": self.per_second,
                "cpu_percent": self.cpu_percent}


@dataclass
class BenchRow:
    """All stages of one model, with the child process's peak resident memory."""

    label: str
    runtime: str
    key: str
    stages: list[Stage] = field(default_factory=list)
    peak_mib: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "runtime": self.runtime, "key": self.key, "peak_mib": self.peak_mib,
                "stages": [s.to_dict() for s in self.stages]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchRow:
        keep = ("name", "items", "seconds", "cpu_seconds")
        stages = [Stage(**{k: s[k] for k in keep}) for s in data["stages"]]
        return cls(data["label"], data["runtime"], data["key"], stages, float(data["peak_mib"]))


def _timed(name: str, items: int, fn: Callable[[], object]) -> Stage:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    fn()
    return Stage(name, items, time.perf_counter() - wall0, time.process_time() - cpu0)


def generated_photos(directory: Path, n: int = 16, size: tuple[int, int] = (4000, 3000)) -> list[Path]:
    """``n`` photo-like JPEGs of ``size`` (12 MP by default) in ``directory``: smooth colour + noise."""
    import numpy as np
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(small, "RGB").resize(size, Image.Resampling.BICUBIC)
        noise = Image.effect_noise(size, 24).convert("RGB")
        img = Image.blend(img, noise, 0.15)
        path = directory / f"photo_{i:03d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def collect_images(paths: Sequence[str], limit: int) -> list[str]:
    """Up to ``limit`` image files under ``paths`` (sorted)."""
    from glimpse.images import is_candidate

    found: list[str] = []
    for raw in paths:
        root = Path(raw).expanduser()
        if not root.exists():
            raise UserInputError(f"{raw} does not exist; give image folders or files to benchmark")
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        found += [str(p) for p in candidates if is_candidate(str(p))]
    if not found:
        raise UserInputError(f"no images found in {list(paths)}")
    return found[:limit]


def measure_model(model: str, files: Sequence[str], *, batch_size: int = 32, device: str = "cpu") -> BenchRow:
    """Measure every stage of ``model`` in this process (see the module docstring)."""
    import numpy as np

    from glimpse.images import open_image
    from glimpse.library import open_library
    from glimpse.preprocess import preprocess_image
    from glimpse.registry import load_encoder, load_spec

    spec = load_spec(model)
    pre = spec.preprocess
    holder: dict[str, Any] = {}

    def load() -> None:
        holder["encoder"] = load_encoder(spec, device=device, batch_size=batch_size)
        holder["encoder"].encode_pixels(np.zeros((1, *pre.input_shape), np.float32))
        holder["encoder"].encode_texts(["warm up"])

    row = BenchRow(model, spec.runtime, spec.key, [_timed("load", 1, load)])
    encoder = holder["encoder"]
    pixels: list[Any] = []
    row.stages.append(_timed("decode", len(files), lambda: pixels.extend(
        preprocess_image(open_image(f, min_side=pre.min_side).image, pre) for f in files)))
    batch = np.stack(pixels)
    row.stages.append(_timed("encode", len(batch), lambda: encoder.encode_pixels(batch)))
    row.stages.append(_timed("text", len(QUERIES), lambda: [encoder.encode_texts([q]) for q in QUERIES]))
    with tempfile.TemporaryDirectory(prefix="glimpse-bench-") as tmp:
        lib = open_library(Path(tmp) / "library", model)
        lib.__dict__["encoder"] = encoder  # reuse the loaded encoder: "total" is indexing, not loading
        try:
            row.stages.append(_timed("total", len(files), lambda: lib.index(list(files), batch_size=batch_size)))
        finally:
            lib.catalog.close()
    row.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return row


def bench_models(models: Sequence[str], paths: Sequence[str], *, limit: int = 64, batch_size: int = 32,
                 device: str = "cpu") -> list[BenchRow]:
    """Measure each of ``models`` in its own child process on the same images; rows in ``models`` order."""
    with tempfile.TemporaryDirectory(prefix="glimpse-bench-images-") as tmp:
        files = collect_images(paths, limit) if paths else [str(p) for p in generated_photos(Path(tmp), 8)]
        rows = []
        for model in models:
            args = json.dumps({"model": model, "files": files, "batch_size": batch_size, "device": device})
            proc = subprocess.run([sys.executable, "-m", "glimpse.bench", args], capture_output=True, text=True)
            if proc.returncode != 0:
                raise GlimpseError(f"benchmark of {model} failed: {proc.stderr.strip().splitlines()[-1:]}")
            rows.append(BenchRow.from_dict(json.loads(proc.stdout.strip().splitlines()[-1])))
        return rows


if __name__ == "__main__":  # the child process of bench_models
    request = json.loads(sys.argv[1])
    result = measure_model(request["model"], request["files"], batch_size=request["batch_size"],
                           device=request["device"])
    sys.stdout.write(json.dumps(result.to_dict()) + "\n")
