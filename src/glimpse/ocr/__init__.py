"""Reading the text in images (OCR): detection + recognition (+ orientation) on onnxruntime.

``base`` holds the types every part shares (``OcrLine``, the ``OcrEngine`` protocol); the engine, the
models it runs, and the catalog's full-text side live in their own modules. No re-exports: import from
the module that owns a name.
"""
