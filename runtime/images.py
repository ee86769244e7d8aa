"""Reading images of any mode and preparing them for a model.

Training and inference share these functions, so a model sees exactly the same
pixels in both. A root module of the runtime: data/ (COCO images), crf/ (the image check),
segment/, training and export all use it, and it uses only errors, inputs and paths.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from tseg.runtime.errors import TsegError, TsegTypeError
from tseg.runtime.inputs import open_input
from tseg.runtime.paths import kind_of
from tseg.runtime.pixel_limit import max_image_pixels, pixel_limit_message

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | Path, *, exif_transpose: bool = False) -> np.ndarray:
    """Reads an image file as RGB.

    Grayscale, palette, RGBA (alpha dropped onto black), CMYK, 16-bit and float
    images are converted to 8-bit RGB; of an animation, the first frame is read.
    Images over :func:`max_image_pixels` are refused before they are decoded.

    Args:
        path: the image file.
        exif_transpose: apply the EXIF orientation tag (photos from phones).
            Keep it off for datasets whose annotations refer to stored pixels.

    Returns:
        (H, W, 3) uint8 array.

    Raises:
        TsegError: the file is missing, not a readable image, empty (0 pixels) or over the pixel limit.
    """
    path = Path(path)
    limit = max_image_pixels()
    # catch_warnings swaps the process's warning filters while the image is read (not thread-safe
    # before Python 3.14): at worst another thread's Pillow warning is hidden for that moment.
    with warnings.catch_warnings():
        # Pillow warns above its own pixel limit: only for images tseg refuses anyway (see _open_image).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # Pillow warns on corrupt EXIF (even when opening a JPEG): it matters only if its orientation is used.
        warnings.filterwarnings("error" if exif_transpose else "ignore", message=_CORRUPT_EXIF, category=UserWarning)
        try:
            return _decode_image(path, limit=limit, exif_transpose=exif_transpose)
        except TsegError:
            raise
        except UserWarning as warning:
            raise TsegError(
                f"cannot apply the EXIF orientation of {path}: its EXIF data is corrupt ({_one_line(warning)})"
            ) from None
        except Exception as err:  # Pillow's decoders raise many types on a corrupt file; all mean "cannot read"
            raise TsegError(f"cannot read image {path}: {_one_line(err) or type(err).__name__}") from None


_CORRUPT_EXIF = r"(?i)(possibly )?corrupt exif"


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


_EXIF_ORIENTATION = 0x0112


def _decode_image(path: Path, *, limit: int | None, exif_transpose: bool) -> np.ndarray:
    with open_input(path, what="image") as handle, _open_image(handle, path, limit) as img:
        width, height = img.size
        if width * height == 0:
            raise TsegError(f"cannot read image {path}: it has no pixels ({width}x{height})")
        if limit is not None and width * height > limit:
            raise TsegError(f"{path} is {width}x{height}: {pixel_limit_message(width * height, limit)}")
        img.load()
        # Most files have no rotation to apply: skip exif_transpose's copy of the whole image then.
        if exif_transpose and img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
        try:
            return to_rgb_array(img)
        except TsegError as err:
            raise TsegError(f"cannot read image {path}: {err}") from None


def _open_image(handle: BinaryIO, path: Path, limit: int | None) -> Image.Image:
    """Image.open with Pillow's decompression-bomb check following tseg's limit.

    Pillow warns above its limit and refuses above twice that; tseg refuses above
    its own limit (checked by the caller), so Pillow's warning is only ever seen
    for an image tseg refuses.
    """
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is not None and (limit is None or limit > pillow_limit):
        Image.MAX_IMAGE_PIXELS = limit  # the user raised tseg's limit: Pillow's follows
        pillow_limit = limit
    try:
        return Image.open(handle)
    except Image.DecompressionBombError as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        pixels = int(found.group(1)) if found else 2 * (pillow_limit or 0) + 1
        raise TsegError(f"{path}: {pixel_limit_message(pixels, limit or pillow_limit or 0)}") from None


_WIDE_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """Converts a PIL image of any mode to an (H, W, 3) uint8 RGB array.

    Raises:
        TsegError: a float image with NaN or infinite pixels.
    """
    if img.mode in _WIDE_GRAY_MODES:
        # 16/32-bit integer or float grayscale: scale the brightest pixel to 255 instead of clipping.
        data = np.asarray(img, dtype=np.float64)
        if not np.isfinite(data).all():
            raise TsegError(f"a {img.mode} image with NaN or infinite pixels cannot be shown as RGB")
        peak = data.max() if data.size and data.max() > 0 else 1.0
        data = np.clip(data * (255.0 / peak), 0, 255).astype(np.uint8)
        return np.repeat(data[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "RGBa", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    # np.asarray of a PIL image is already a C-contiguous copy; convert() would copy an RGB image once more.
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)


def check_image(image: object, *, name: str = "image") -> np.ndarray:
    """Returns ``image`` if it is an (H, W, 3) uint8 array with H, W >= 1: the one image check.

    Args:
        image: the array to check.
        name: how the caller names it in the error ("image", "input 3").

    Raises:
        TsegTypeError: not a NumPy array, or not uint8 (a TypeError too).
        TsegError: another shape; both say what came.
    """
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and min(image.shape[:2]) >= 1):
        shape, dtype = getattr(image, "shape", None), getattr(image, "dtype", type(image).__name__)
        error = TsegTypeError if not isinstance(image, np.ndarray) or image.dtype != np.uint8 else TsegError
        raise error(f"{name}: need an (H, W, 3) uint8 image with H, W >= 1, got shape {shape} {dtype}")
    return image


def resize_image(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resizes an RGB image with antialiased bilinear filtering.

    Args:
        image: (H, W, 3) uint8.
        size: target (height, width).

    Returns:
        (height, width, 3) uint8; the input itself when no resize is needed.
    """
    height, width = int(size[0]), int(size[1])
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(image).resize((width, height), Image.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def resize_labels(labels: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resizes a label map with nearest neighbour (labels must not blend).

    Args:
        labels: (H, W) integer labels.
        size: target (height, width).
    """
    height, width = int(size[0]), int(size[1])
    if labels.shape == (height, width):
        return labels
    # Index arithmetic instead of PIL: works for any integer dtype and matches
    # PIL's NEAREST sampling at pixel centres.
    rows = ((np.arange(height) + 0.5) * (labels.shape[0] / height)).astype(np.int64)
    cols = ((np.arange(width) + 0.5) * (labels.shape[1] / width)).astype(np.int64)
    return labels[np.minimum(rows, labels.shape[0] - 1)[:, None], np.minimum(cols, labels.shape[1] - 1)]


def normalize(image: np.ndarray, *, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Turns an RGB image into a model input.

    Args:
        image: (H, W, 3) uint8.
        mean: per-channel mean on the [0, 1] scale.
        std: per-channel std on the [0, 1] scale.

    Returns:
        (3, H, W) float32, C-contiguous: (pixel / 255 - mean) / std.
    """
    # Per channel, in place in a C-contiguous (3, H, W): one float32 pass per operation
    # (no float64 temporaries, no transposing copy before the model). Each step rounds to
    # float32 exactly as the formula does, so the result matches it bit for bit.
    scale = np.float32(1.0 / 255.0)
    out = np.empty((3, image.shape[0], image.shape[1]), dtype=np.float32)
    for channel in range(3):
        plane = out[channel]
        np.multiply(image[:, :, channel], scale, out=plane, dtype=np.float32)
        np.subtract(plane, np.float32(mean[channel]), out=plane)
        np.divide(plane, np.float32(std[channel]), out=plane)
    return out


def preprocess(
    image: np.ndarray, *, size: Sequence[int], mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """Resizes to the model's input size and normalises: (H, W, 3) uint8 -> (3, h, w) float32."""
    return normalize(resize_image(image, size), mean=mean, std=std)


def _walk_error(err: OSError) -> None:
    raise TsegError(f"cannot list {err.filename}: {err.strerror or err}")


def _images_in(folder: Path) -> list[Path]:
    """Image files under ``folder`` (links to folders not followed), sorted; special files refused.

    Raises:
        TsegError: an unreadable sub-folder, or a FIFO, device or dangling link with an image suffix.
    """
    images = []
    for root, _, names in os.walk(folder, onerror=_walk_error):
        for name in names:
            path = Path(root) / name
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if not path.is_file():
                kind = "a link to nothing (or a loop)" if not path.exists() else kind_of(path.stat().st_mode)
                raise TsegError(f"{path} is {kind}, not an image file: move it out of {folder}")
            images.append(path)
    return sorted(images)


def find_images(paths: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """Expands files and folders into image files.

    Args:
        paths: image files and folders (searched recursively).

    Returns:
        (image path, path relative to the folder it was found in) pairs, sorted
        within each folder; a file given directly is relative to its parent.

    Raises:
        TsegError: a path is missing, or nothing was found.
    """
    found: list[tuple[Path, Path]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += [(p, p.relative_to(path)) for p in _images_in(path)]
        elif path.exists():
            with open_input(path, what="image"):  # a regular file (not a FIFO or device): refused up front
                pass
            found.append((path, Path(path.name)))
        else:
            what = "a symbolic link to nothing (or a loop)" if path.is_symlink() else "no such file or folder"
            raise TsegError(f"{path}: {what}")
    if not found:
        raise TsegError(
            f"no images found in {', '.join(map(str, paths))} (looked for {', '.join(IMAGE_SUFFIXES)})"
        )
    return found
