"""Build a tagger from user options (shared by the CLI and library callers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from glimpse.errors import UserInputError

if TYPE_CHECKING:
    from glimpse.encoders.base import Encoder
    from glimpse.pipeline import Progress
    from glimpse.tagging.base import Tagger

OPEN_SET_MODEL = "openai/clip-vit-base-patch16"  # RAM's label space: CLIP ViT-B/16 text embeddings
LANGUAGES = ("en", "zh")


def parse_languages(value: str) -> tuple[str, ...]:
    langs = tuple(p.strip() for p in value.split(",") if p.strip())
    bad = [lang for lang in langs if lang not in LANGUAGES]
    if bad or not langs:
        raise UserInputError(f"--lang {value!r}: expected a comma list of {', '.join(LANGUAGES)}")
    return langs


def build_tagger(kind: str, *, encoder: Encoder | None = None, ram_checkpoint: str | None = None,
                 languages: Sequence[str] = ("en",), global_threshold: bool = False, open_set: Sequence[str] = (),
                 open_threshold: float | None = None, open_set_encoder: Encoder | None = None,
                 vocabulary: str | None = None, calibrated: str | None = None, tag_list: str | None = None,
                 chinese_list: str | None = None, thresholds: str | None = None, device: str = "cpu",
                 cache_dir: str | None = None, progress: Progress | None = None) -> Tagger:
    """``kind`` "clip" (needs ``encoder``) or "ram" (needs ``ram_checkpoint``).

    ``cache_dir``: a library directory whose text cache keeps the CLIP tagger's prompt embeddings between runs;
    ``progress``: counts the CLIP tagger's vocabulary prompts as they are encoded.
    """
    if kind == "clip":
        from glimpse.tagging.calibrate import apply_thresholds
        from glimpse.tagging.clip_tagger import ClipTagger
        from glimpse.tagging.vocab import load_vocabulary

        if encoder is None:
            raise UserInputError("the CLIP tagger needs a CLIP-family model (--model)")
        vocab = load_vocabulary(vocabulary)
        if calibrated:
            apply_thresholds(calibrated, vocab)
        cache = None
        if cache_dir is not None:
            from glimpse.zeroshot import text_cache_for

            cache = text_cache_for(cache_dir, encoder.key)
        return ClipTagger(encoder, vocab, open_set=open_set, open_threshold=open_threshold, cache=cache,
                          progress=progress)
    if kind == "ram":
        from glimpse.tagging.ram_onnx import OnnxRamTagger, is_onnx_export

        if not ram_checkpoint:
            raise UserInputError("--tagger ram needs --ram-checkpoint FILE (e.g. ram_plus_swin_large_14m.pth)")
        files = dict(languages=languages, tag_list=tag_list, chinese_list=chinese_list, thresholds=thresholds,
                     need_thresholds=not global_threshold, device=device)
        tagger: Tagger
        if is_onnx_export(ram_checkpoint):
            if open_set:
                raise UserInputError("--open-set needs the RAM .pth checkpoint (open-set queries are built with "
                                     "torch); an ONNX export tags its closed vocabulary only")
            tagger = OnnxRamTagger(ram_checkpoint, **files)
        else:
            from glimpse.tagging.ram import OPEN_SET_THRESHOLD, RamTagger

            tagger = RamTagger(ram_checkpoint, **files)
            if open_set:
                if open_set_encoder is None:
                    from glimpse.registry import load_encoder

                    open_set_encoder = load_encoder(OPEN_SET_MODEL, device=device)
                tagger.add_open_set(open_set, open_set_encoder,
                                    threshold=OPEN_SET_THRESHOLD if open_threshold is None else open_threshold)
        if calibrated:
            from glimpse.tagging.calibrate import apply_thresholds

            apply_thresholds(calibrated, tagger.vocab)
        return tagger
    raise UserInputError(f"--tagger {kind!r}: expected 'clip' or 'ram'")
