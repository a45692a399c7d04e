"""Decoding and vetting of any image a user gives, and its pixels as floats.

`check_image_header` reads only a file's header and refuses files that are too large (bytes on disk,
pixel count, bytes once decoded); `load_image` does the same checks, then decodes into an upright,
fully loaded PIL image (EXIF orientation honoured, first frame of animations and multi-page files)
plus human notes; `to_array` turns any PIL image or array into float32 0..255 pixels, transparency
composited. Every failure is an ImageError worded for people: what was wrong — what to do.
Only numpy and PIL: no TensorFlow and no Streamlit here.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageMode, ImageOps

from cnn.core.errors import ImageError

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_BYTES",
    "MAX_PIXELS",
    "BYTES_PER_PIXEL",
    "check_image_header",
    "load_image",
    "open_image",
    "to_array",
    "to_gray",
    "convert_mode",
    "shrink_image",
]

ACCEPTED_FORMATS = ("png", "jpg", "webp", "bmp", "gif", "tiff")
MAX_BYTES = 20_000_000  # largest file accepted, in bytes
MAX_PIXELS = 40_000_000  # largest image accepted, in pixels (width × height)
BYTES_PER_PIXEL = 4  # the widest decoded pixel of the accepted formats (RGBA, CMYK, I, F): the default decoded-size limit

# PIL's names for the accepted formats (MPO is how PIL reads many phone JPEGs).
_PIL_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "BMP", "DIB", "GIF", "TIFF"})
_ACCEPTED_TEXT = ", ".join(ACCEPTED_FORMATS[:-1]) + " or " + ACCEPTED_FORMATS[-1]  # for messages
_WORKING_MODES = frozenset({"L", "LA", "RGB", "RGBA", "I", "F"})  # what numpy reads and PIL resamples as is
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's "L"


# ---------------------------------------------------------------------------
# Sources: bytes, paths and binary files
# ---------------------------------------------------------------------------

def _source_kind(source) -> str | None:
    """'bytes', 'path' or 'file' for what load_image can read, None for anything else (the one check)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(source, (str, os.PathLike)):
        return "path"
    if hasattr(source, "getvalue") or hasattr(source, "read"):
        return "file"
    return None


def _open_stream(source, max_bytes: int) -> tuple[BinaryIO, int]:
    """A binary stream positioned at the start and its size; paths are size-checked before opening."""
    kind = _source_kind(source)
    if kind == "bytes":
        data = bytes(source)
        return io.BytesIO(data), len(data)
    if kind == "path":
        return _open_path(Path(source), max_bytes)
    if kind == "file":
        # Streamlit's UploadedFile and BytesIO hold everything: getvalue ignores the read position.
        if hasattr(source, "getvalue"):
            data = source.getvalue()
        else:
            if getattr(source, "seekable", lambda: False)():
                source.seek(0)
            data = source.read(max_bytes + 1)
        if isinstance(data, str):
            raise TypeError("image files must be opened in binary mode ('rb'), not text mode")
        data = bytes(data)
        return io.BytesIO(data), len(data)
    raise TypeError(f"cannot load an image from {type(source).__name__}: pass bytes, a path or a binary file")


def _open_path(path: Path, max_bytes: int) -> tuple[BinaryIO, int]:
    """The file at `path`, opened for reading once its size is known to be within the limit."""
    # Name the path the user gave, so a typo is easy to spot.
    if not path.exists():
        raise ImageError(f"There is no file at {path} — check the path.")
    if not path.is_file():
        raise ImageError(f"{path} is a folder, not an image file — choose an image file.")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_many_bytes(size, max_bytes)
        return open(path, "rb"), size  # noqa: SIM115 — the caller closes it
    except OSError as exc:
        reason = exc.strerror or exc
        raise ImageError(f"Could not read {path} ({reason}) — check that the file is readable.") from None


# ---------------------------------------------------------------------------
# Headers and decoding
# ---------------------------------------------------------------------------

def check_image_header(
    source, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES, max_decoded_bytes: int | None = None
) -> tuple[int, int, str, str]:
    """(width, height, mode, format) of an image file, reading only its header.

    `source` is bytes, a path or a binary file. Raises ImageError, naming the numbers, when the file is
    empty, larger than `max_bytes`, not an accepted format, or its header claims more than `max_pixels`
    pixels or more than `max_decoded_bytes` bytes once decoded (default: BYTES_PER_PIXEL × max_pixels).
    `format` is PIL's name ("JPEG", "PNG", …; phone JPEGs that PIL calls MPO are "JPEG"). The limits
    default to the ones load_image uses, and load_image runs these same checks.
    """
    stream, size = _open_stream(source, max_bytes)
    with stream, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = _open_checked(stream, size, max_bytes, max_pixels, max_decoded_bytes)
        with image:
            return image.width, image.height, image.mode, _format_name(image)


def load_image(
    source, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS, max_decoded_bytes: int | None = None
) -> tuple[Image.Image, list[str]]:
    """Decode bytes, a path or a binary file into an upright, fully loaded PIL image plus human notes.

    The file is vetted first exactly as check_image_header does (same limits), before any pixel is decoded.
    """
    stream, size = _open_stream(source, max_bytes)
    # PIL warnings must not escape; a decompression-bomb warning becomes an error we translate.
    with stream, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open_checked(stream, size, max_bytes, max_pixels, max_decoded_bytes)
        return _decode(image, max_pixels)


def _open_checked(
    stream: BinaryIO, size: int, max_bytes: int, max_pixels: int, max_decoded_bytes: int | None
) -> Image.Image:
    """Open (header only) and vet: file size, format, pixel count and decoded size; failures are ImageErrors."""
    if max_decoded_bytes is None:
        max_decoded_bytes = BYTES_PER_PIXEL * max_pixels
    # Refuse empty and oversized files before PIL sees them.
    if size == 0:
        raise ImageError(f"The file is empty (0 bytes) — choose a {_ACCEPTED_TEXT} image.")
    if size > max_bytes:
        raise _too_many_bytes(size, max_bytes)
    try:
        # PIL's own bomb warning (> 89 Mpx) would hide the dimensions: our max_pixels check below names them.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(stream)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels_from(exc, max_pixels) from None
    except Exception as exc:  # noqa: BLE001 — untrusted bytes: any plugin failure means "unreadable"
        stream.seek(0)
        raise _unreadable(stream.read(1024), exc) from None
    fmt = image.format or "unknown"
    if fmt not in _PIL_FORMATS:
        image.close()
        raise ImageError(f"{fmt} images are not supported — convert it to {_ACCEPTED_TEXT} first.")
    # Only the header has been read so far: check the pixel count and decoded size before decoding any pixels.
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise _too_many_pixels(width, height, max_pixels)
    decoded = width * height * _bytes_per_pixel(image.mode)
    if decoded > max_decoded_bytes:
        image.close()
        raise ImageError(
            f"The image is {width}×{height} pixels in mode {image.mode}, {_millions(decoded)} MB once decoded; "
            f"the limit is {_millions(max_decoded_bytes)} MB — downscale it first."
        )
    return image


def _decode(image: Image.Image, max_pixels: int) -> tuple[Image.Image, list[str]]:
    """Fully decode an opened, vetted image: first frame, EXIF orientation; every failure becomes an ImageError."""
    notes: list[str] = []
    fmt = image.format or "unknown"
    kind = _format_name(image)
    frames = _count_frames(image)
    try:
        # First frame of animations / first page of multi-page TIFFs; load() makes truncation fail here.
        if frames != 1:
            image.seek(0)
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels_from(exc, max_pixels) from None
    except Exception as exc:  # noqa: BLE001
        raise _damaged(kind, exc) from None
    if frames != 1 and fmt != "MPO":
        what = "pages" if fmt == "TIFF" else "frames"
        label = "multi-page TIFF" if fmt == "TIFF" else f"animated {kind}"
        count = f"the first of {frames} {what}" if frames else f"the first of its {what}"
        notes.append(f"{label}: used {count}")
    # Honour EXIF orientation (phone photos are often stored sideways); this also detaches from the file.
    orientation = _exif_orientation(image)
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 — broken EXIF must not block an otherwise fine image
        upright = image.copy()
        notes.append("could not read the EXIF orientation: used the image as stored")
    else:
        if orientation in range(2, 9):
            notes.append(f"turned upright using the photo's EXIF orientation (tag value {orientation})")
    return upright, notes


def _format_name(image: Image.Image) -> str:
    """PIL's format name for people: MPO (how PIL reads many phone JPEGs) is JPEG."""
    fmt = image.format or "unknown"
    return "JPEG" if fmt == "MPO" else fmt


def _bytes_per_pixel(mode: str) -> int:
    """Bytes one decoded pixel takes in `mode` (bands × sample size); 4 for modes PIL does not describe."""
    try:
        descriptor = ImageMode.getmode(mode)
    except KeyError:
        return 4
    return len(descriptor.bands) * np.dtype(descriptor.typestr).itemsize


def _count_frames(image: Image.Image) -> int:
    """Number of frames/pages, or 0 when counting them fails (a damaged later frame)."""
    try:
        return int(getattr(image, "n_frames", 1))
    except Exception:  # noqa: BLE001
        return 0


def _exif_orientation(image: Image.Image) -> int:
    """The EXIF Orientation tag (0x0112), 1 when absent or unreadable."""
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001
        return 1


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------

def _too_many_bytes(size: int, limit: int) -> ImageError:
    """The 'file too large' error, sizes in MB."""
    return ImageError(
        f"The file is {size / 1e6:.1f} MB; the limit is {limit / 1e6:g} MB — choose a smaller file or downscale it first."
    )


def _millions(count: float) -> str:
    """A count in millions, short: '144', '2.5', '0.04' (pixels → megapixels, bytes → MB)."""
    value = count / 1e6
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def _too_many_pixels(width: int, height: int, limit: int) -> ImageError:
    """The 'huge dimensions' error naming both sizes."""
    return ImageError(
        f"The image is {width}×{height} pixels ({_millions(width * height)} megapixels); "
        f"the limit is {_millions(limit)} megapixels — downscale it first."
    )


def _too_many_pixels_from(exc: Exception, limit: int) -> ImageError:
    """The 'huge dimensions' error from PIL's decompression-bomb message (it only gives the pixel count)."""
    limit = min(limit, 2 * (Image.MAX_IMAGE_PIXELS or limit))
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{_millions(int(found.group(1)))} megapixels" if found else "too many pixels"
    return ImageError(f"The image has {size}; the limit is {_millions(limit)} megapixels — downscale it first.")


def _damaged(kind: str, exc: Exception) -> ImageError:
    """The 'truncated or corrupt' error for a file that claims to be `kind`."""
    return ImageError(f"The {kind} file is truncated or corrupt ({_reason(exc)}) — re-save or re-export it and try again.")


def _unconvertible(mode: str, exc: Exception) -> ImageError:
    """The error for a PIL image whose pixels cannot be read or converted."""
    return ImageError(f"Could not read the {mode} image ({_reason(exc)}) — re-save it as PNG or JPEG and try again.")


def _reason(exc: Exception) -> str:
    """A short, single-line reason from a decoder exception."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _sniff_format(head: bytes) -> str | None:
    """The format the first bytes claim to be, if any: 'PNG', 'JPEG', …, 'HEIC', 'SVG', 'text'."""
    head = head[:1024]
    signatures = {
        b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF",
        b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"BM": "BMP",
    }
    for signature, name in signatures.items():
        if head.startswith(signature):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"heim", b"heis"):
        return "HEIC"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the 1024-byte boundary is still text.
        if exc.start < len(head) - 3:
            return None
        text = head[: exc.start].decode("utf-8")
    if any(ord(ch) < 32 and ch not in "\t\n\r\f" for ch in text):
        return None
    return "SVG" if "<svg" in text.lower() else "text"


def _unreadable(head: bytes, exc: Exception) -> ImageError:
    """The error for bytes PIL could not open, worded by what their first bytes look like."""
    kind = _sniff_format(head)
    if kind == "HEIC":
        return ImageError("HEIC/HEIF/AVIF photos are not supported — export or convert it to JPEG or PNG first.")
    if kind == "SVG":
        return ImageError("SVG vector images are not supported — export it as a PNG first.")
    if kind == "text":
        return ImageError(f"The file is text, not an image — choose a {_ACCEPTED_TEXT} image.")
    if kind is not None:
        return _damaged(kind, exc)
    start = head[:4].hex(" ")
    return ImageError(
        f"The file is not an image in a supported format (it starts with bytes {start}) — choose a {_ACCEPTED_TEXT} image."
    )


# ---------------------------------------------------------------------------
# Pixels
# ---------------------------------------------------------------------------

def open_image(source) -> tuple[Image.Image | np.ndarray, list[str]]:
    """Any image source as a PIL image or array plus notes: PIL images and arrays as they are, bytes,
    paths and binary files through load_image, lists and other array-likes as arrays."""
    if isinstance(source, (Image.Image, np.ndarray)):
        return source, []
    if _source_kind(source) is not None:
        return load_image(source)
    if isinstance(source, (list, tuple)) or hasattr(source, "__array__"):
        return np.asarray(source), []
    raise TypeError(
        f"cannot read an image from {type(source).__name__}: pass a PIL image, an array, bytes, a path or a binary file"
    )


def to_array(image) -> np.ndarray:
    """Any PIL image or array-like → float32 in [0, 255], (H, W) or (H, W, 3), transparency composited."""
    if isinstance(image, Image.Image):
        pixels = _read_pil(image)
    else:
        pixels = _read_array(image)
    # (H, W, 2) is gray+alpha and (H, W, 4) RGBA: flatten onto the background that contrasts with the ink.
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        pixels = _composite(pixels[..., :-1], pixels[..., -1] / 255.0)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    return np.ascontiguousarray(np.clip(pixels, 0, 255), dtype=np.float32)


def to_gray(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) → (H, W) luminance (as PIL's "L"); (H, W) or (H, W, 1) unchanged, as float32."""
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return pixels @ _LUMA
    return pixels.reshape(pixels.shape[:2]).astype(np.float32)


def convert_mode(image: Image.Image) -> Image.Image:
    """The image in a mode numpy reads and PIL resamples directly: L, LA, RGB, RGBA, I or F (the one ladder).

    1 → L; P/PA → RGB or RGBA (RGBA when the palette has transparency); La/RGBa (premultiplied) → LA/RGBA;
    16-bit I;16* → I; anything else (CMYK, YCbCr, RGBX, …) → RGB. May raise PIL's errors: callers wrap it.
    """
    mode = image.mode
    if mode in _WORKING_MODES:
        return image
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA"):
        return image.convert("RGBA" if _has_alpha(image) else "RGB")
    if mode in ("La", "RGBa"):
        return image.convert(mode[:-1] + "A")
    if mode.startswith("I;16"):
        return image.convert("I")
    return image.convert("RGB")


def shrink_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Box-downsize a PIL image to size=(h, w), converting it first with convert_mode."""
    with _reading_pixels(image.mode):
        return convert_mode(image).resize((size[1], size[0]), Image.Resampling.BOX)


@contextmanager
def _reading_pixels(mode: str):
    """Keep PIL's warnings quiet and turn any failure to read or convert pixels into an ImageError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        except Exception as exc:  # noqa: BLE001 — lazily loaded files can fail here too
            raise _unconvertible(mode, exc) from None


def _read_pil(image: Image.Image) -> np.ndarray:
    """A PIL image's pixels as float 0..255 with 1, 2, 3 or 4 channels (alpha last)."""
    with _reading_pixels(image.mode):
        image = convert_mode(image)
        # 16/32-bit and float images carry their own range: rescaled to 0..255 below.
        wide = image.mode in ("I", "F")
        pixels = np.asarray(image, dtype=np.float64 if wide else np.float32)
    if image.mode == "F":
        return _rescale(pixels, kind="float")
    if image.mode == "I":
        return _rescale(pixels, kind="wide")
    return pixels


def _has_alpha(image: Image.Image) -> bool:
    """Whether a palette image has transparency."""
    return image.mode == "PA" or "transparency" in image.info or bool(image.palette and image.palette.mode == "RGBA")


def _read_array(value) -> np.ndarray:
    """An array-like's pixels as float 0..255: uint8 as is, floats ≤ 1 as 0..1, wider ranges rescaled."""
    pixels = np.asarray(value)
    if pixels.dtype.kind not in "biuf":
        raise ImageError(f"An image array must hold numbers, not {pixels.dtype} — pass a numeric array.")
    shape_ok = pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (1, 2, 3, 4))
    if not shape_ok or pixels.size == 0:
        raise ImageError(
            f"An image array must be (H, W) or (H, W, C) with C = 1, 3 or 4; got shape {pixels.shape} — reshape it."
        )
    if pixels.dtype.kind == "b":
        return pixels.astype(np.float32) * 255
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32)
    values = pixels.astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageError("The image array contains NaN or infinite values — replace them before predicting.")
    return _rescale(values, kind="float" if pixels.dtype.kind == "f" else "int")


def _rescale(values: np.ndarray, kind: str) -> np.ndarray:
    """Float 0..1 → ×255; 0..255 kept; otherwise (always for 'wide' 16/32-bit images) own min..max → 0..255."""
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if kind == "float" and low >= 0 and high <= 1:
        return (values * 255).astype(np.float32)
    if kind != "wide" and low >= 0 and high <= 255 and (kind == "float" or high > 1):
        return values.astype(np.float32)
    if high == low:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - low) * (255 / (high - low))).astype(np.float32)


def _composite(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite over black when the visible pixels are mostly light, over white when mostly dark."""
    if alpha.min() >= 1:
        return colour
    weight = float(alpha.sum())
    # Alpha-weighted mean luminance of what is visible: light ink (canvas strokes) needs a dark background.
    light = weight == 0 or float(np.vdot(to_gray(colour), alpha)) / weight >= 127.5
    out = colour * alpha[..., None]  # over black
    if not light:
        out += 255.0 * (1.0 - alpha[..., None])  # over white
    return out
