"""Dataset readers and tools: ImageFolder, COCO captions JSON, Flickr-style captions, YOLO labels.

Readers return plain lists (paths as strings, labels as ints, captions as strings) so that evaluation,
probes and training share one view of a dataset. ``split_image_folder`` makes a deterministic
train/val/test split; ``channel_stats`` streams a folder for per-channel mean/std without holding it in RAM.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from glimpse.errors import ImageError, UserInputError
from glimpse.images import IMAGE_EXTENSIONS


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _require_dir(path: str | os.PathLike[str], what: str) -> Path:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise UserInputError(f"{what} {path} is not a folder; expected {what} laid out as described in --help")
    return directory


def iter_images(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Image files (by extension) under ``root``, recursively, in sorted order (hidden files skipped)."""
    root = Path(root)
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if _is_image_name(name):
                yield Path(dirpath) / name


# -- ImageFolder ---------------------------------------------------------------------------------------
@dataclass
class ImageFolder:
    """``root/<class>/<image>``: ``paths[i]`` has class index ``labels[i]`` into ``classes`` (sorted names)."""

    root: Path
    classes: list[str]
    paths: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.paths)

    def class_names(self) -> list[str]:
        """Class folder names as readable labels (``"sports_car"`` -> ``"sports car"``)."""
        return [name.replace("_", " ") for name in self.classes]


def read_image_folder(root: str | os.PathLike[str]) -> ImageFolder:
    """Read an ImageFolder tree; each sub-folder of ``root`` is one class (images found recursively)."""
    directory = _require_dir(root, "image folder")
    classes = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        for path in iter_images(directory / name):
            paths.append(str(path))
            labels.append(index)
    if not classes or not paths:
        raise UserInputError(
            f"{root} is not an ImageFolder: expected one sub-folder per class with images inside "
            f"(found {len(classes)} sub-folders and {len(paths)} images)"
        )
    return ImageFolder(directory, classes, paths, labels)


# -- captions -----------------------------------------------------------------------------------------
@dataclass
class CaptionSet:
    """Images with one or more captions each: ``captions[i]`` are the captions of ``paths[i]``."""

    paths: list[str]
    captions: list[list[str]]

    def pairs(self) -> list[tuple[str, str]]:
        """Every (image path, caption) pair, in order."""
        return [(p, c) for p, caps in zip(self.paths, self.captions, strict=True) for c in caps]


def _finish_captions(by_image: dict[str, list[str]], source: str) -> CaptionSet:
    if not by_image:
        raise UserInputError(f"{source} holds no captions of existing images")
    paths = sorted(by_image)
    return CaptionSet(paths, [by_image[p] for p in paths])


def read_coco_captions(json_path: str | os.PathLike[str],
                       images_dir: str | os.PathLike[str] | None = None) -> CaptionSet:
    """COCO captions JSON (``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``).

    Image files are looked up under ``images_dir`` (default: the JSON's folder); captions of missing
    images raise, so that an evaluation never silently runs on a subset.
    """
    path = Path(json_path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = {int(im["id"]): str(im["file_name"]) for im in data["images"]}
        annotations = [(int(a["image_id"]), str(a["caption"]).strip()) for a in data["annotations"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserInputError(
            f"{json_path} is not a COCO captions file ({type(exc).__name__}: {exc}); expected JSON with "
            '"images" [{"id", "file_name"}] and "annotations" [{"image_id", "caption"}]'
        ) from exc
    base = Path(images_dir).expanduser() if images_dir else path.parent
    by_image: dict[str, list[str]] = defaultdict(list)
    for image_id, caption in annotations:
        if image_id not in images:
            raise UserInputError(f"{json_path}: annotation refers to image id {image_id}, which is not in 'images'")
        file = base / images[image_id]
        if not file.is_file():
            raise UserInputError(f"{json_path}: image {file} does not exist; pass --images with the image folder")
        by_image[str(file)].append(caption)
    return _finish_captions(by_image, str(json_path))


def read_flickr_captions(txt_path: str | os.PathLike[str], images_dir: str | os.PathLike[str]) -> CaptionSet:
    """Flickr8k/30k-style captions: one ``image.jpg#n<TAB>caption`` (or ``image.jpg,caption``) per line.

    A first line ``image,caption`` (the Kaggle CSV header) is skipped.
    """
    base = _require_dir(images_dir, "images folder")
    try:
        lines = Path(txt_path).expanduser().read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserInputError(f"cannot read captions file {txt_path} ({exc})") from exc
    by_image: dict[str, list[str]] = defaultdict(list)
    for number, line in enumerate(lines, 1):
        if not line.strip() or (number == 1 and line.strip().lower() in ("image,caption", "image\tcaption")):
            continue
        sep = "\t" if "\t" in line else ","
        name, _, caption = line.partition(sep)
        name = name.split("#", 1)[0].strip()
        if not caption.strip() or not name:
            raise UserInputError(f"{txt_path}:{number}: expected 'image.jpg#0<TAB>caption', found {line[:80]!r}")
        file = base / name
        if not file.is_file():
            raise UserInputError(f"{txt_path}:{number}: image {file} does not exist")
        by_image[str(file)].append(caption.strip())
    return _finish_captions(by_image, str(txt_path))


# -- YOLO labels (multi-label) -----------------------------------------------------------------------
@dataclass
class MultiLabelSet:
    """Images with sets of class indices: ``targets`` is ``bool[n_images, n_classes]``."""

    classes: list[str]
    paths: list[str]
    targets: np.ndarray = field(repr=False)


def _read_class_names(path: Path) -> list[str]:
    """Class names from ``classes.yaml`` / ``data.yaml`` (``names:`` list or ``id: name`` map) or ``*.txt``."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip()]
    names: dict[int, str] = {}
    inline: list[str] | None = None
    in_names = False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if line.startswith("names:"):
            rest = line[len("names:"):].strip()
            if rest.startswith("["):
                inline = [n.strip().strip("'\"") for n in rest.strip("[]").split(",") if n.strip()]
            in_names = not rest
            continue
        if in_names and line.startswith((" ", "\t")):
            item = line.strip()
            if item.startswith("- "):
                names[len(names)] = item[2:].strip().strip("'\"")
            elif ":" in item:
                key, _, value = item.partition(":")
                names[int(key)] = value.strip().strip("'\"")
        elif in_names:
            in_names = False
    if inline is not None:
        return inline
    if not names:
        raise UserInputError(f"{path} has no class names (expected a 'names:' list or map)")
    return [names[i] for i in range(max(names) + 1)]


def read_yolo(images_dir: str | os.PathLike[str], labels_dir: str | os.PathLike[str],
              classes_file: str | os.PathLike[str]) -> MultiLabelSet:
    """YOLO detection labels as multi-label targets: ``labels/<stem>.txt`` lines ``class x y w h``.

    An image without a label file has no classes (a negative example).
    """
    images = _require_dir(images_dir, "images folder")
    labels = _require_dir(labels_dir, "labels folder")
    classes = _read_class_names(Path(classes_file).expanduser())
    paths = [str(p) for p in iter_images(images)]
    targets = np.zeros((len(paths), len(classes)), dtype=bool)
    for row, path in enumerate(paths):
        label_file = labels / (Path(path).stem + ".txt")
        if not label_file.is_file():
            continue
        for number, line in enumerate(label_file.read_text(encoding="utf-8").splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            try:
                class_id = int(fields[0])
            except ValueError as exc:
                raise UserInputError(f"{label_file}:{number}: expected 'class x y w h', found {line!r}") from exc
            if not 0 <= class_id < len(classes):
                raise UserInputError(
                    f"{label_file}:{number}: class {class_id} is outside 0..{len(classes) - 1} of {classes_file}"
                )
            targets[row, class_id] = True
    if not paths:
        raise UserInputError(f"{images_dir} holds no images")
    return MultiLabelSet(classes, paths, targets)


# -- split ----------------------------------------------------------------------------------------------
@dataclass
class SplitReport:
    counts: dict[str, dict[str, int]]  # split -> class -> images

    def to_dict(self) -> dict[str, Any]:
        return {"splits": self.counts, "totals": {s: sum(c.values()) for s, c in self.counts.items()}}


def split_image_folder(source: str | os.PathLike[str], dest: str | os.PathLike[str], *, val: float = 0.1,
                       test: float = 0.1, seed: int = 0, link: bool = False) -> SplitReport:
    """Copy (or hard-link) an ImageFolder into ``dest/{train,val,test}/<class>/``, stratified per class.

    Deterministic: the order within a class comes from a seeded shuffle of the sorted file names, so the
    same ``seed`` always gives the same split. Each class gets ``round(n * val)`` validation and
    ``round(n * test)`` test images. ``dest`` must not already hold a split (nothing is overwritten).
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise UserInputError(f"--val and --test must be fractions in [0, 1) summing below 1, got {val} and {test}")
    data = read_image_folder(source)
    out = Path(dest).expanduser()
    if out.exists() and any(out.iterdir()):
        raise UserInputError(f"{dest} already exists and is not empty; choose a new output folder")
    if out.resolve().is_relative_to(data.root.resolve()):
        raise UserInputError(f"{dest} is inside {source}; choose an output folder outside the dataset")
    per_class: dict[int, list[str]] = defaultdict(list)
    for path, label in zip(data.paths, data.labels, strict=True):
        per_class[label].append(path)
    counts: dict[str, dict[str, int]] = {"train": {}, "val": {}, "test": {}}
    for label, paths in sorted(per_class.items()):
        name = data.classes[label]
        # A per-class seed: adding a class never reshuffles the others.
        class_seed = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")
        order = sorted(paths)
        random.Random(class_seed).shuffle(order)
        n_val, n_test = round(len(order) * val), round(len(order) * test)
        parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
        for split, members in parts.items():
            counts[split][name] = len(members)
            target_dir = out / split / name
            target_dir.mkdir(parents=True, exist_ok=True)
            for src in members:
                rel = Path(src).relative_to(data.root / name)
                target = target_dir / str(rel).replace(os.sep, "__")
                try:
                    if link:
                        os.link(src, target)
                    else:
                        shutil.copy2(src, target)
                except OSError as exc:
                    raise UserInputError(
                        f"cannot {'link' if link else 'copy'} {src} to {target} ({exc.strerror or exc}); "
                        + ("hard links need the same file system: leave out --link" if link else
                           "check free space and permissions")
                    ) from exc
    return SplitReport(counts)


# -- stats ----------------------------------------------------------------------------------------------
@dataclass
class ChannelStats:
    """Per-channel statistics of pixel values scaled to [0, 1], RGB order."""

    images: int
    pixels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    failed: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "pixels": self.pixels, "mean": list(self.mean), "std": list(self.std),
                "failed": self.failed}


def channel_stats(root: str | os.PathLike[str], *, size: int | None = None) -> ChannelStats:
    """Streaming per-channel mean/std of every image under ``root`` (RGB, values in [0, 1]).

    One image is decoded at a time and folded into float64 running sums (Chan et al.'s parallel
    variance update per image), so memory stays constant however large the folder. ``size`` resizes
    each image's shorter side first (faster on big photos, and what a model actually sees).
    Unreadable files are listed in ``failed`` rather than stopping the run.
    """
    from PIL import Image

    from glimpse.images import open_image

    n = 0
    mean = np.zeros(3, dtype=np.float64)
    m2 = np.zeros(3, dtype=np.float64)
    images = 0
    failed: list[dict[str, str]] = []
    for path in iter_images(_require_dir(root, "image folder") if not Path(root).is_file() else root):
        try:
            decoded = open_image(path, min_side=size).image
        except ImageError as exc:
            failed.append({"path": str(path), "reason": str(exc)})
            continue
        if size:
            scale = size / min(decoded.size)
            if scale < 1:
                new = (max(1, round(decoded.width * scale)), max(1, round(decoded.height * scale)))
                decoded = decoded.resize(new, Image.Resampling.BILINEAR)
        pixels = np.asarray(decoded, dtype=np.float64).reshape(-1, 3) / 255.0
        count = len(pixels)
        batch_mean = pixels.mean(axis=0)
        batch_m2 = ((pixels - batch_mean) ** 2).sum(axis=0)
        delta = batch_mean - mean
        total = n + count
        mean = mean + delta * (count / total)
        m2 = m2 + batch_m2 + delta**2 * (n * count / total)
        n = total
        images += 1
    if images == 0:
        raise UserInputError(f"no readable images under {root}")
    std = np.sqrt(m2 / n)
    return ChannelStats(images, n, tuple(float(x) for x in mean), tuple(float(x) for x in std),  # type: ignore[arg-type]
                        failed)


__all__ = [
    "CaptionSet",
    "ChannelStats",
    "ImageFolder",
    "MultiLabelSet",
    "SplitReport",
    "channel_stats",
    "iter_images",
    "read_coco_captions",
    "read_flickr_captions",
    "read_image_folder",
    "read_yolo",
    "split_image_folder",
]
