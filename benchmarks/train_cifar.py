"""The training proof: a tiny CLIP trained from scratch on CIFAR-10 (500 images/class) on a 2-core CPU,
scored zero-shot on the CIFAR-10 test folder through glimpse's normal loader (library + eval classify).

    python benchmarks/train_cifar.py --threads 2            # ~7 min on 2 idle cores, ~56 % top-1
    taskset -c 0,1 python benchmarks/train_cifar.py ...     # pin to 2 cores on a bigger machine

Baseline, measured in the same run: the same architecture at initialisation (``max_steps=0``) scored the
same way (chance is 10 %). Needs torch + transformers and ../shared/data (cifar10, clip-tokenizer).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def zero_shot(model: Path, test: Path, workdir: Path) -> dict:
    """top-1/top-5 via Library + evaluate_classification: exactly what `glimpse eval classify` runs."""
    import glimpse
    from glimpse.evaluate import evaluate_classification

    with glimpse.open_library(workdir / f"lib-{model.name}", model=str(model)) as lib:
        report = evaluate_classification(lib, test)
    return {"top1": report["zero_shot"]["top1"], "top5": report["zero_shot"]["top5"],
            "per_class": report["zero_shot"]["per_class"], "model_key": report["model_key"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "cifar10")
    parser.add_argument("--tokenizer", type=Path, default=DATA / "clip-tokenizer")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="keep the trained checkpoint here")
    parser.add_argument("--max-steps", type=int, default=None, help="smoke test: stop after this many steps")
    args = parser.parse_args()

    import torch

    from glimpse.templates import load_templates
    from glimpse.train import TrainOptions, image_folder_data, train_clip

    torch.set_num_threads(args.threads)
    samples = image_folder_data(args.data / "train", load_templates("short"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        train_clip(samples, work / "init", config="tiny", tokenizer=args.tokenizer,
                   options=TrainOptions(epochs=1, max_steps=0, threads=args.threads))
        baseline = zero_shot(work / "init", args.data / "test", work)
        out = args.out or work / "trained"
        started = time.perf_counter()
        report = train_clip(samples, out, config="tiny", tokenizer=args.tokenizer, eval_folder=args.data / "test",
                            options=TrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                                 threads=args.threads, max_steps=args.max_steps),
                            log=lambda message: print(f"{time.perf_counter() - started:7.1f}s {message}", flush=True))
        train_seconds = time.perf_counter() - started
        trained = zero_shot(out, args.data / "test", work)
        result = {
            "machine_threads": args.threads, "epochs": args.epochs, "steps": report.steps,
            "train_images": report.images, "train_wall_s": round(train_seconds, 1),
            "total_wall_s": round(time.perf_counter() - start, 1),
            "baseline_untrained_top1": baseline["top1"], "trained_top1": trained["top1"],
            "trained_top5": trained["top5"], "ratio_vs_untrained": round(trained["top1"] / max(baseline["top1"], 1e-9),
                                                                          2),
            "per_epoch_top1": report.eval_top1, "per_class": trained["per_class"], "model_key": trained["model_key"],
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
