"""Short videos encoded by PyAV in the tests: scenes of distinct colours and shapes with known cut times."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SCENE_COLOURS = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 210, 40), (200, 60, 200), (40, 210, 210)]


def scene_picture(scene: int, t: float, width: int, height: int) -> np.ndarray:
    """uint8[h, w, 3]: the scene's colour under a texture of its own (so that an encoder sees a cut as one, as
    in filmed video) with a white square drifting across it (motion inside a scene)."""
    rng = np.random.default_rng(scene)
    texture = np.kron(rng.integers(-40, 41, (height // 8 + 1, width // 8 + 1, 1)), np.ones((8, 8, 1)))
    rgb = np.clip(np.array(SCENE_COLOURS[scene % len(SCENE_COLOURS)]) + texture[:height, :width], 0, 255)
    rgb = rgb.astype(np.uint8)
    side = height // 4
    x = int((t * 20) % max(1, width - side))
    rgb[height // 3 : height // 3 + side, x : x + side] = 255
    return rgb


def write_video(path: Path, scene_seconds: list[float], *, codec: str = "libx264", fps: int = 24,
                size: tuple[int, int] = (160, 96), rotation: int | None = None, gop: int | None = None,
                first_scene: int = 0) -> Path:
    """Encode consecutive scenes of the given lengths; returns ``path``. Cuts at the cumulative sums. Scene ``i``
    shows ``scene_picture(first_scene + i, …)`` (another video's scenes look different)."""
    import av

    width, height = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        n = 0
        for scene, seconds in enumerate(scene_seconds):
            for _ in range(round(seconds * fps)):
                picture = scene_picture(first_scene + scene, n / fps, width, height)
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
                n += 1
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    import av

    rate = 16000
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        samples = (np.sin(np.arange(int(rate * seconds)) / 10) * 8000).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def cut_times(scene_seconds: list[float]) -> list[float]:
    return list(np.cumsum([0.0, *scene_seconds]))
