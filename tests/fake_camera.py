"""A fake camera for browser tests: Chromium plays a video file as the webcam when started with

    --use-fake-device-for-media-stream --use-file-for-fake-video-capture=<file.y4m or file.mjpeg>

and the page is granted the camera (Playwright: browser.new_context(permissions=["camera"]), or the flag
--use-fake-ui-for-media-stream). Checked here with /usr/bin/chromium headless: getUserMedia delivers the
file's 640×480 frames, and a frame grabbed into a canvas and sent as JPEG is read right by prepare_image and
the committed model. No ffmpeg needed: write_y4m writes the raw video from numpy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_y4m(path, frames, fps: int = 10) -> Path:
    """RGB uint8 frames (H, W, 3), all one size with even H and W, as a YUV 4:2:0 .y4m video (BT.601, full
    range, the 'C420jpeg' layout Chromium's file capturer reads)."""
    frames = [np.asarray(f, dtype=np.uint8) for f in frames]
    height, width = frames[0].shape[:2]
    if height % 2 or width % 2 or any(f.shape != (height, width, 3) for f in frames):
        raise ValueError(f"frames must all be (H, W, 3) with even H and W; got {[f.shape for f in frames][:3]}")
    path = Path(path)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            r, g, b = (frame[..., i].astype(np.float64) for i in range(3))
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
            v = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
            out.write(b"FRAME\n")
            # Chroma at half resolution: the mean of each 2×2 block.
            for plane in (y, _half(u), _half(v)):
                out.write(np.clip(np.round(plane), 0, 255).astype(np.uint8).tobytes())
    return path


def read_y4m(path) -> list[np.ndarray]:
    """The frames of a .y4m written by write_y4m, back as RGB uint8 (for checking the writer)."""
    data = Path(path).read_bytes()
    header, _, body = data.partition(b"\n")
    fields = {f[:1]: f[1:] for f in header.split()[1:]}
    width, height = int(fields[b"W"]), int(fields[b"H"])
    size = width * height * 3 // 2
    frames = []
    for chunk in body.split(b"FRAME\n")[1:]:
        planes = np.frombuffer(chunk[:size], np.uint8).astype(np.float64)
        y = planes[:width * height].reshape(height, width)
        u, v = (np.repeat(np.repeat(p.reshape(height // 2, width // 2), 2, 0), 2, 1)
                for p in np.split(planes[width * height:], 2))
        rgb = np.stack([y + 1.402 * (v - 128), y - 0.344136 * (u - 128) - 0.714136 * (v - 128),
                        y + 1.772 * (u - 128)], axis=-1)
        frames.append(np.clip(np.round(rgb), 0, 255).astype(np.uint8))
    return frames


def write_mjpeg(path, frames, quality: int = 95) -> Path:
    """RGB uint8 frames as a Motion-JPEG file (JPEGs one after another), Chromium's other fake-capture format."""
    import io

    from PIL import Image

    path = Path(path)
    with path.open("wb") as out:
        for frame in frames:
            buffer = io.BytesIO()
            Image.fromarray(np.asarray(frame, dtype=np.uint8), "RGB").save(buffer, format="JPEG", quality=quality)
            out.write(buffer.getvalue())
    return path


def _half(plane: np.ndarray) -> np.ndarray:
    height, width = plane.shape
    return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
