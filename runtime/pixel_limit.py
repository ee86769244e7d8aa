"""How big an image tseg decodes: the guard against decompression bombs, and how to raise it.

The limit is set from Python (:func:`set_max_image_pixels`), by a CLI's
``--max-image-pixels`` (:func:`pixel_limit_option`), or by the environment variable
``TSEG_MAX_IMAGE_PIXELS``; :func:`tseg.runtime.images.read_image` enforces it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from tseg.runtime.errors import TsegError

MAX_IMAGE_PIXELS_ENV = "TSEG_MAX_IMAGE_PIXELS"
"""Environment variable with the pixel limit (a positive integer, or ``none``)."""

DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
"""Pillow's default ``Image.MAX_IMAGE_PIXELS`` (a 24-bit image of about 256 MiB)."""

_UNSET = object()
_max_pixels: object = _UNSET  # set_max_image_pixels() wins over the environment variable
_limit_setting: str | None = None  # how a CLI's pixel_limit_option names the limit while it runs (None: Python's words)


def parse_pixel_limit(text: str, *, what: str) -> int | None:
    """Parses a pixel limit as a user writes it: a positive integer, or ``none`` for no limit.

    Args:
        text: e.g. ``"200000000"`` or ``"200_000_000"`` (not ``"2e8"``), or ``"none"``.
        what: names the setting in errors (e.g. ``--max-image-pixels``).

    Raises:
        TsegError: anything else.
    """
    cleaned = str(text).strip().replace("_", "")
    if cleaned.lower() == "none":
        return None
    # ASCII digits only ("²".isdigit() is True), and few enough for int() to take.
    if not (cleaned.isascii() and cleaned.isdigit() and len(cleaned) <= 30) or int(cleaned) < 1:
        raise TsegError(f"{what}: need a positive number of pixels or 'none' (no limit), got {text!r:.40}")
    return int(cleaned)


def set_max_image_pixels(pixels: int | None) -> None:
    """Sets the largest image (width * height) that :func:`read_image` decodes.

    The limit guards against decompression bombs (a small file that expands to
    gigabytes). It wins over the environment variable ``TSEG_MAX_IMAGE_PIXELS``.
    Raising it above Pillow's own limit raises Pillow's (``PIL.Image.MAX_IMAGE_PIXELS``)
    to match when an image is read, as Pillow would refuse the image otherwise.

    Args:
        pixels: a positive integer, or None for no limit.

    Raises:
        TsegError: ``pixels`` is not a positive integer or None.
    """
    global _max_pixels
    if pixels is not None and (isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1):
        raise TsegError(
            f"pixels: need a positive integer or None (no limit), got {pixels!r:.40}", parameter="pixels"
        )
    _max_pixels = pixels


def max_image_pixels() -> int | None:
    """The pixel limit now in force: set by :func:`set_max_image_pixels`, else by
    ``TSEG_MAX_IMAGE_PIXELS``, else :data:`DEFAULT_MAX_IMAGE_PIXELS`; None = no limit.

    Raises:
        TsegError: the environment variable is set to something that is not a limit.
    """
    if _max_pixels is not _UNSET:
        return _max_pixels  # type: ignore[return-value]
    env = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if env:
        return parse_pixel_limit(env, what=f"environment variable {MAX_IMAGE_PIXELS_ENV}")
    return DEFAULT_MAX_IMAGE_PIXELS


@contextmanager
def image_pixel_limit(pixels: int | None) -> Iterator[None]:
    """Runs a block with :func:`set_max_image_pixels` (``pixels``), then restores the previous setting."""
    global _max_pixels
    previous = _max_pixels
    set_max_image_pixels(pixels)
    try:
        yield
    finally:
        _max_pixels = previous


@contextmanager
def pixel_limit_option(text: str | None, *, what: str) -> Iterator[None]:
    """Runs a block under a command-line pixel limit (``N`` or ``none``); the limit is unchanged when ``text`` is None.

    The limit is also put in ``TSEG_MAX_IMAGE_PIXELS`` for the block, so that
    worker processes (DataLoader workers, spawned or forked) read the same limit.
    While the block runs, images over the limit are told to raise it with ``what``
    (``--max-image-pixels 600``) instead of Python's ``set_max_image_pixels(600)``:
    the advice reaches a CLI's user in lines it does not translate (per-image
    ``failed:`` lines, errors.txt).

    Args:
        text: the limit as the user typed it, or None (not given).
        what: the setting as the user spells it, e.g. the CLI's flag ``--max-image-pixels``.

    Raises:
        TsegError: ``text`` is not a positive integer or ``none``.
    """
    global _limit_setting
    previous_setting = _limit_setting
    _limit_setting = what
    try:
        if text is None:
            yield
            return
        pixels = parse_pixel_limit(text, what=what)
        previous_env = os.environ.get(MAX_IMAGE_PIXELS_ENV)
        os.environ[MAX_IMAGE_PIXELS_ENV] = "none" if pixels is None else str(pixels)
        try:
            with image_pixel_limit(pixels):
                yield
        finally:
            if previous_env is None:
                os.environ.pop(MAX_IMAGE_PIXELS_ENV, None)
            else:
                os.environ[MAX_IMAGE_PIXELS_ENV] = previous_env
    finally:
        _limit_setting = previous_setting


def pixel_limit_message(pixels: int, limit: int) -> str:
    """Says that an image is over the pixel limit, and how to raise the limit.

    In Python's words (``set_max_image_pixels(N)``), or in a CLI's while its
    :func:`pixel_limit_option` block runs (``--max-image-pixels N``).
    """
    if _limit_setting is None:
        how, removes = f"tseg.runtime.set_max_image_pixels({pixels})", "None or 'none'"
    else:
        how, removes = f"{_limit_setting} {pixels}", "'none'"
    return (
        f"{pixels} pixels is over the limit of {limit} that guards against decompression bombs;"
        f" if the image is genuine, raise the limit with {how}"
        f" (or the environment variable {MAX_IMAGE_PIXELS_ENV}; {removes} removes the limit)"
    )
