"""Reading images of any mode and preparing them for a model.

Training and inference share these functions, so a model sees exactly the same
pixels in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tseg.runtime.errors import TsegError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | Path, *, exif_transpose: bool = False) -> np.ndarray:
    """Reads an image file as RGB.

    Grayscale, palette, RGBA (alpha dropped onto black), CMYK and 16-bit
    images are converted to 8-bit RGB.

    Args:
        path: the image file.
        exif_transpose: apply the EXIF orientation tag (photos from phones).
            Keep it off for datasets whose annotations refer to stored pixels.

    Returns:
        (H, W, 3) uint8 array.

    Raises:
        TsegError: the file is missing or not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise TsegError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            if exif_transpose:
                img = ImageOps.exif_transpose(img)
            return to_rgb_array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise TsegError(f"cannot read image {path}: {err}") from None


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """Converts a PIL image of any mode to an (H, W, 3) uint8 RGB array."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping at 255.
        data = np.asarray(img, dtype=np.float64)
        peak = data.max() if data.size and data.max() > 0 else 1.0
        data = np.clip(data * (255.0 / peak), 0, 255).astype(np.uint8)
        return np.repeat(data[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


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
        (3, H, W) float32, (pixel / 255 - mean) / std.
    """
    scale = np.float32(1.0 / 255.0)
    mean_arr = np.asarray(mean, dtype=np.float32)[:, None, None]
    std_arr = np.asarray(std, dtype=np.float32)[:, None, None]
    chw = image.transpose(2, 0, 1).astype(np.float32) * scale
    return (chw - mean_arr) / std_arr


def preprocess(
    image: np.ndarray, *, size: Sequence[int], mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """Resizes to the model's input size and normalises: (H, W, 3) uint8 -> (3, h, w) float32."""
    return normalize(resize_image(image, size), mean=mean, std=std)


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
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            found += [(p, p.relative_to(path)) for p in files if p.is_file()]
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            raise TsegError(f"no such file or folder: {path}")
    if not found:
        raise TsegError(
            f"no images found in {', '.join(map(str, paths))} (looked for {', '.join(IMAGE_SUFFIXES)})"
        )
    return found
