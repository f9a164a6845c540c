"""Rollout videos: RGB frames to an MP4 (H.264 through PyAV) or, without an encoder, an animated GIF.

    path = write_video(frames, out_dir / 'episode_3', fps=20)   # -> episode_3.mp4 or .gif

MP4 with H.264 (yuv420p, even frame size) plays in every browser's <video>; PyAV (`av` wheel, an
ffmpeg with libx264 built in) encodes it. Where PyAV or its H.264 encoder is missing, the frames go
into an animated GIF (Pillow), which an <img> shows everywhere. `video_encoder()` says which.

What it is not: drawing on frames (rollouts.py) or a report (report.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ['video_encoder', 'write_video']


def video_encoder() -> Optional[str]:
    """The H.264 encoder PyAV offers ('libx264', 'h264', ...), or None (GIF fallback)."""
    try:
        import av
    except ImportError:
        return None
    for name in ('libx264', 'h264', 'libopenh264'):
        try:
            av.codec.Codec(name, 'w')
            return name
        except Exception:   # noqa: BLE001 - av raises several kinds for a missing codec
            continue
    return None


def write_video(frames: Sequence[np.ndarray], stem: str | Path, fps: float = 20.0,
                force_gif: bool = False) -> Path:
    """Write HxWx3 uint8 RGB frames (same size) to `stem`.mp4, or `stem`.gif without an H.264
    encoder; returns the path written."""
    frames = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
    if not frames:
        raise ValueError('no frames')
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    encoder = None if force_gif else video_encoder()
    if encoder is None:
        return _write_gif(frames, stem.with_suffix('.gif'), fps)
    return _write_mp4(frames, stem.with_suffix('.mp4'), fps, encoder)


def _write_mp4(frames, path: Path, fps: float, encoder: str) -> Path:
    import av
    from fractions import Fraction
    h, w = frames[0].shape[:2]
    h2, w2 = h - h % 2, w - w % 2       # yuv420p needs even sizes
    # faststart: the index at the front, so that a browser starts playing before the end loads.
    with av.open(str(path), mode='w', options={'movflags': '+faststart'}) as container:
        stream = container.add_stream(encoder, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w2, h2, 'yuv420p'
        # Small files, quick to encode: the frames are tiny and few.
        stream.options = {'crf': '23', 'preset': 'veryfast'}
        for f in frames:
            frame = av.VideoFrame.from_ndarray(f[:h2, :w2], format='rgb24')
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _write_gif(frames, path: Path, fps: float) -> Path:
    from PIL import Image
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                   duration=max(20, int(round(1000.0 / fps))), optimize=False)
    return path
