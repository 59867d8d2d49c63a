"""Text encoding shared by the server's request threads, one caller at a time, in short fair turns.

Hugging Face fast tokenizers fail ("Already borrowed") when two threads tokenize at once, so texts reach
the encoder one caller at a time. A caller with many texts (``/api/classify``: labels x prompt templates)
must not hold the encoder for its whole request, or every search's query waits behind it (1000 labels held
it for 18 s). So :class:`TurnTakingEncoder` encodes at most ``chunk`` texts per turn and queues again for
the next one, and :class:`FifoLock` grants turns in arrival order: a search that arrives while a classify
runs waits for at most one chunk.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType

import numpy as np

from glimpse.encoders.base import Encoder

DEFAULT_TEXT_CHUNK = 32  # texts per turn: one text batch of the tiny-to-base towers, tens of ms on a CPU


class FifoLock:
    """A lock granted in arrival order.

    ``threading.Lock`` lets the releasing thread take it again at once, so a loop of short turns could
    starve a waiting thread; here ``release`` hands the lock straight to the longest waiter.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Event] = deque()

    def acquire(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # release() sets it when handing the lock over: we hold it from then on

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().set()  # still held: ownership passes to that waiter
            else:
                self._held = False

    @property
    def waiting(self) -> int:
        """How many threads are queued behind the current holder."""
        with self._mutex:
            return len(self._waiters)

    def __enter__(self) -> FifoLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


class TurnTakingEncoder(Encoder):
    """``inner`` (the server's one loaded encoder) with text encoding taken in FIFO turns of ``chunk`` texts.

    Results are ``inner``'s (``float32[n, d]``, rows L2-normalised). Images pass straight through: a
    forward pass of the image tower needs no turn. The indexing job encodes through this too, so the texts
    it may encode (IVF tuning's text probes) take turns with the searches'. Closing this closes nothing
    (the library owns ``inner``).
    """

    def __init__(self, inner: Encoder, chunk: int = DEFAULT_TEXT_CHUNK) -> None:
        # batch_size = chunk: Encoder.encode_texts calls _encode_texts once per chunk, i.e. once per turn.
        super().__init__(inner.spec, batch_size=chunk)
        self.inner = inner
        self.turns = FifoLock()

    @property
    def waiting(self) -> int:
        """Callers queued for a text turn behind the one encoding now."""
        return self.turns.waiting

    # Encoder.encode_texts checks the input, splits it into batch_size (= chunk) pieces, calls this hook per
    # piece and L2-normalises the result (a no-op on inner's already normalised rows).
    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        with self.turns:
            return self.inner.encode_texts(texts)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """``inner.encode_pixels``, whole: images need no turn, and inner batches them its own way."""
        return self.inner.encode_pixels(pixels)

    def _encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self.inner.encode_pixels(pixels)

    def prefetch_image_tower(self) -> None:
        self.inner.prefetch_image_tower()

    @property
    def overlapping_batches(self) -> int:
        return self.inner.overlapping_batches
