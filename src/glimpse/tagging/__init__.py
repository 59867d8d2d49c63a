"""Image tagging: a bilingual vocabulary, a CLIP open-vocabulary tagger, and RAM / RAM++ checkpoints.

Importing this package imports neither torch nor transformers; the taggers import them when built.
"""
