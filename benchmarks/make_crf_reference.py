"""Inputs for the dense-CRF parity tests and benchmark, and the stored references.

Running this script (with pydensecrf2 installed: ``pip install pydensecrf2``) writes
small cases with pydensecrf's outputs to tests/runtime/crf_reference/*.npz, which the
tests use when pydensecrf2 is absent. The same module defines the large live cases:
tests/runtime/test_crf_parity.py and benchmarks/crf.py import it.

Inputs: photographs that matplotlib ships (a crop of grace_hopper.jpg and an MRI slice),
or a synthetic image; probabilities are smooth random logits (bicubic-upsampled noise
plus a little image structure) softmaxed over the labels, so that the CRF changes
labels rather than rubber-stamping the argmax.

    python benchmarks/make_crf_reference.py [--out tests/runtime/crf_reference]
"""

from __future__ import annotations

import argparse
import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tseg.runtime.crf import parameters as crf_parameters

DEFAULT = {"gaussian_sxy": crf_parameters.GAUSSIAN_SXY, "gaussian_compat": crf_parameters.GAUSSIAN_COMPAT,
           "bilateral_sxy": crf_parameters.BILATERAL_SXY, "bilateral_srgb": crf_parameters.BILATERAL_SRGB,
           "bilateral_compat": crf_parameters.BILATERAL_COMPAT}  # tseg's (pydensecrf's) defaults
DEEPLAB = {"gaussian_sxy": 1.0, "gaussian_compat": 3.0, "bilateral_sxy": 67.0,
           "bilateral_srgb": 3.0, "bilateral_compat": 4.0}
REFERENCE_DIR = Path(__file__).resolve().parents[1] / "tests" / "runtime" / "crf_reference"


@dataclass(frozen=True)
class Case:
    """One parity case: an image source, a size, labels and CRF settings."""

    name: str
    source: str  # "photo", "mri" or "synthetic"
    height: int
    width: int
    num_classes: int
    iterations: int
    params: dict = field(default_factory=lambda: dict(DEFAULT))
    compat: str = "potts"  # "potts", "vector" or "matrix"
    hard_labels: bool = False
    seed: int = 0


def _sample(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / name


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


def make_image(source: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: a photo crop, an MRI slice, or smooth synthetic colour blobs."""
    if source == "photo":  # grace_hopper.jpg is 600 x 512 (H x W): crop, then resize
        from PIL import Image

        photo = np.asarray(Image.open(_sample("grace_hopper.jpg")).convert("RGB"))
        side = min(photo.shape[:2])
        top = (photo.shape[0] - side) // 2
        return np.array(_resize(photo[top:top + side, :side], height, width))
    if source == "mri":  # 256 x 256 big-endian uint16 slice
        raw = np.frombuffer(gzip.open(_sample("s1045.ima.gz")).read(), ">u2")
        mri = raw.reshape(256, 256).astype(np.float64)
        mri = np.clip(mri / np.percentile(mri, 99.5), 0, 1) * 255
        gray = _resize(mri.astype(np.uint8), height, width)
        tint = np.array([1.0, 0.9, 0.75])  # not grey: all three channels differ
        return np.clip(gray[..., None] * tint, 0, 255).astype(np.uint8)
    if source == "synthetic":
        rng = np.random.default_rng(seed)
        low = rng.uniform(0, 255, (max(2, height // 24), max(2, width // 24), 3))
        image = _resize(low.astype(np.uint8), height, width).astype(np.float64)
        image += rng.normal(0, 6, image.shape)
        return np.clip(image, 0, 255).astype(np.uint8)
    raise ValueError(f"source: need 'photo', 'mri' or 'synthetic', got {source!r}")


def make_probs(image: np.ndarray, num_classes: int, seed: int = 0) -> np.ndarray:
    """(C, H, W) float32 softmax of smooth random logits tied a little to the image."""
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    low = rng.normal(0, 2.5, (num_classes, 6, 6)).astype(np.float32)
    from PIL import Image

    logits = np.stack([np.asarray(Image.fromarray(c).resize((width, height), Image.BICUBIC))
                       for c in low])
    gray = image.mean(axis=2) / 255.0 - 0.5
    logits[0] += 3.0 * gray
    logits[num_classes // 2] -= 3.0 * gray
    logits += rng.normal(0, 0.8, logits.shape).astype(np.float32)
    probs = np.exp(logits - logits.max(axis=0))
    return (probs / probs.sum(axis=0)).astype(np.float32)


def make_compat(kind: str, params: dict, num_classes: int, seed: int = 0) -> dict:
    """CRF keyword settings with the compat of the given kind ('potts' keeps scalars)."""
    out = dict(params)
    if kind == "potts":
        return out
    rng = np.random.default_rng(seed + 1)
    for key in ("gaussian_compat", "bilateral_compat"):
        w = params[key]
        if kind == "vector":
            out[key] = (-w * rng.uniform(0.5, 1.5, num_classes)).astype(np.float32)
        elif kind == "matrix":  # class-dependent costs; pydensecrf symmetrises it
            m = w * rng.uniform(0.0, 1.0, (num_classes, num_classes))
            np.fill_diagonal(m, -w)
            out[key] = m.astype(np.float32)
        else:
            raise ValueError(f"compat: need 'potts', 'vector' or 'matrix', got {kind!r}")
    return out


def make_inputs(case: Case) -> tuple[np.ndarray, np.ndarray, dict]:
    """(image, probs or labels, settings) of a case."""
    image = make_image(case.source, case.height, case.width, case.seed)
    probs = make_probs(image, case.num_classes, case.seed)
    settings = make_compat(case.compat, case.params, case.num_classes, case.seed)
    if case.hard_labels:
        return image, probs.argmax(axis=0).astype(np.uint8), settings
    return image, probs, settings


def reference_unary(data: np.ndarray, num_classes: int, hard_labels: bool) -> np.ndarray:
    """pydensecrf's own unary helpers (label 0 a real class: zero_unsure=False)."""
    from pydensecrf.utils import unary_from_labels, unary_from_softmax

    if hard_labels:
        return unary_from_labels(data, num_classes, gt_prob=0.7, zero_unsure=False)
    return unary_from_softmax(data)


def reference_q(image: np.ndarray, unary: np.ndarray, settings: dict,
                iterations: int) -> np.ndarray:
    """Q (C, H, W) float32 from pydensecrf (DenseCRF2D, default symmetric norm)."""
    import pydensecrf.densecrf as dcrf

    height, width = image.shape[:2]
    num_classes = unary.shape[0]
    crf = dcrf.DenseCRF2D(width, height, num_classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary.reshape(num_classes, -1), np.float32))
    crf.addPairwiseGaussian(sxy=settings["gaussian_sxy"],
                            compat=_reference_compat(settings["gaussian_compat"]))
    crf.addPairwiseBilateral(sxy=settings["bilateral_sxy"], srgb=settings["bilateral_srgb"],
                             rgbim=np.array(image, np.uint8, order="C"),  # writable
                             compat=_reference_compat(settings["bilateral_compat"]))
    q = np.array(crf.inference(iterations), dtype=np.float32)
    return q.reshape(num_classes, height, width)


def _reference_compat(compat):
    return compat if np.isscalar(compat) else np.ascontiguousarray(compat, np.float32)


# Stored (small: the whole folder stays well under 2 MB) and live (full-size) cases.
STORED = [
    Case("photo_default_5it", "photo", 64, 64, 6, 5),
    Case("photo_deeplab_10it_odd", "photo", 45, 71, 4, 10, dict(DEEPLAB)),
    Case("mri_default_5it", "mri", 56, 48, 5, 5, seed=3),
    Case("synthetic_matrix_5it", "synthetic", 40, 56, 12, 5, compat="matrix", seed=1),
    Case("synthetic_vector_3it", "synthetic", 37, 29, 3, 3, compat="vector", seed=2),
    Case("photo_labels_10it", "photo", 60, 50, 5, 10, hard_labels=True, seed=4),
]
LIVE = [
    Case("photo512_default_5it", "photo", 512, 512, 12, 5),
    Case("photo512_default_10it", "photo", 512, 512, 12, 10),
    Case("photo512_deeplab_10it", "photo", 512, 512, 12, 10, dict(DEEPLAB)),
    Case("photo512_matrix_5it", "photo", 512, 512, 12, 5, compat="matrix", seed=5),
    Case("mri512_deeplab_5it", "mri", 512, 512, 12, 5, dict(DEEPLAB), seed=6),
    Case("mri256_vector_10it", "mri", 256, 256, 8, 10, compat="vector", seed=7),
    # Noisy colours and srgb=3 make a huge bilateral lattice: 320 x 320 keeps the suite
    # quick. Not 10 iterations: there this case is chaotic at float32 precision
    # (pydensecrf against itself with the unary scaled by 1 + 1e-7: max |dQ| 3.7e-4).
    Case("synthetic320_deeplab_matrix_5it", "synthetic", 320, 320, 12, 5, dict(DEEPLAB),
         compat="matrix", seed=8),
    Case("photo_odd_333x517_default_5it", "photo", 333, 517, 5, 5, seed=9),
    Case("photo512_labels_5it", "photo", 512, 512, 12, 5, hard_labels=True, seed=10),
]


def write_reference(case: Case, out_dir: Path) -> Path:
    """Run pydensecrf on a case and save inputs, settings and Q to <name>.npz."""
    image, data, settings = make_inputs(case)
    unary = reference_unary(data, case.num_classes, case.hard_labels)
    q = reference_q(image, unary, settings, case.iterations)
    arrays = {f"setting_{k}": np.asarray(v) for k, v in settings.items()}
    path = out_dir / f"{case.name}.npz"
    np.savez_compressed(path, image=image, data=data, q=q, iterations=case.iterations,
                        num_classes=case.num_classes, hard_labels=case.hard_labels, **arrays)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REFERENCE_DIR)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for case in STORED:
        path = write_reference(case, args.out)
        print(f"{path}  {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
