"""Post-processing cost: labels_from_scores (resize every class, then argmax) vs upsample_labels.

    python benchmarks/postprocess.py [--repeat N]

    python benchmarks/postprocess.py --crf-rss [--max-pixels N ...]

Logits are 12 classes at 256x256, shaped like a DeepLab head's output (a smooth
field at stride 8, upsampled in the graph); labels at 512x512 and 4000x3000. Prints
ms per image for both, their ratio, the share of output pixels on class boundaries
(the only ones upsample_labels interpolates) and whether the labels agree.

``--crf-rss`` measures instead the peak RSS (ru_maxrss of a fresh subprocess) of a
4000x3000 JPEG read with read_image and refined by CrfParams.refine_logits, for each
``--max-pixels`` (a cap above 12 Mpx is the full-resolution CRF of before).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tseg.runtime.scores import labels_from_scores, resize_scores
from tseg.runtime.segment.upsample import upsample_labels

NUM_CLASSES = 12
MODEL_OUTPUT = (256, 256)
SIZES = ((512, 512), (3000, 4000))


def model_like_logits(seed: int = 0) -> np.ndarray:
    """(C, 256, 256) float32: a few regions per class at stride 8, bilinearly upsampled."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(NUM_CLASSES, 8, 8)).astype(np.float32) * 3
    stride8 = resize_scores(coarse, (32, 32)) + rng.normal(size=(NUM_CLASSES, 32, 32)).astype(np.float32) * 0.3
    return np.ascontiguousarray(resize_scores(stride8, MODEL_OUTPUT))


def best_ms(func, repeat: int) -> float:
    """The fastest of ``repeat`` runs, in ms (a shared machine adds noise, never removes it)."""
    func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def boundary_share(logits: np.ndarray, size: tuple[int, int]) -> float:
    """Fraction of output pixels whose 4 bilinear corners disagree on the argmax."""
    low = logits.argmax(axis=0)
    mixed = np.zeros(low.shape, bool)
    mixed[:-1] |= low[:-1] != low[1:]
    mixed[:, :-1] |= low[:, :-1] != low[:, 1:]
    mixed[:-1, :-1] |= low[:-1, :-1] != low[1:, 1:]
    return float(mixed.mean())


CRF_CHILD = """
import json, resource, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from postprocess import model_like_logits
from tseg.runtime.images import read_image
from tseg.runtime.segment.refine import CrfParams
logits = model_like_logits()
params = CrfParams(max_pixels=int(sys.argv[3]))
start = time.perf_counter()
labels = params.refine_logits(logits, read_image(sys.argv[2]))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "shape": list(labels.shape), "classes": int(len(np.unique(labels)))}))
"""


def photo(path: Path, size: tuple[int, int] = (3000, 4000)) -> None:
    """A 4000x3000 JPEG of smooth colour regions (what a camera gives, roughly)."""
    from PIL import Image

    logits = model_like_logits(seed=1)[:3]
    rgb = resize_scores(logits, (size[0] // 8, size[1] // 8))
    rgb = (255 * (rgb - rgb.min()) / (rgb.max() - rgb.min())).transpose(1, 2, 0).astype(np.uint8)
    Image.fromarray(rgb).resize((size[1], size[0]), Image.BILINEAR).save(path, quality=90)


def crf_rss(max_pixels: list[int]) -> None:
    """Peak RSS and time of refine_logits on a 4000x3000 JPEG, one subprocess per cap."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "photo.jpg"
        photo(path)
        for cap in max_pixels:
            run = subprocess.run([sys.executable, "-c", CRF_CHILD, str(Path(__file__).parent), str(path), str(cap)],
                                 capture_output=True, text=True, check=True)
            result = json.loads(run.stdout.strip().splitlines()[-1])
            print(f"max_pixels {cap:>12,}: peak RSS {result['peak_mib']:7.0f} MiB, {result['seconds']:6.1f} s,"
                  f" labels {tuple(result['shape'])}, {result['classes']} classes present")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="runs per measurement at 512x512 (fewer at 12 Mpx)")
    parser.add_argument("--crf-rss", action="store_true", help="peak RSS of the CRF on a 4000x3000 JPEG instead")
    parser.add_argument("--max-pixels", type=int, nargs="+", default=[10**12, 1_000_000],
                        help="CRF caps to measure with --crf-rss (10**12: no cap, the CRF of before)")
    args = parser.parse_args()
    if args.crf_rss:
        crf_rss(args.max_pixels)
        return
    logits = model_like_logits()
    print(f"logits {logits.shape}, boundary cells {boundary_share(logits, MODEL_OUTPUT):.1%}")
    print(f"{'output':>11} {'labels_from_scores':>19} {'upsample_labels':>16} {'ratio':>7}  same labels")
    for size in SIZES:
        repeat = args.repeat if size[0] * size[1] <= 1 << 20 else max(1, args.repeat // 7)
        old = best_ms(lambda s=size: labels_from_scores(logits, s), repeat)
        new = best_ms(lambda s=size: upsample_labels(logits, s), repeat)
        same = np.array_equal(labels_from_scores(logits, size), upsample_labels(logits, size))
        print(f"{size[0]:>5}x{size[1]:<5} {old:16.1f} ms {new:13.2f} ms {old / new:6.1f}x  {same}")


if __name__ == "__main__":
    main()
