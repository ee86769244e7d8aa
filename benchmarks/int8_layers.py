"""Which layers of an INT8 file lose the most? ONNX Runtime's QDQ debugging tools on val images.

    python benchmarks/int8_layers.py runs/demo/best.onnx runs/demo/best.int8.onnx --data DATA [--images 8]

Runs the FP32 graph (after the same ``quant_pre_process`` the INT8 export ran, so tensor names
match) and the INT8 graph with every intermediate tensor exposed
(``qdq_loss_debug.modify_model_output_intermediate_tensors``), on val images preprocessed as the
runtime does, pairs the tensors (``create_activation_matching``) and prints the signal-to-
quantization-noise ratio (SQNR, dB; higher is better) of each quantized activation:
``qdq_err`` compares a tensor with its own Q->DQ round trip (the rounding at that point), and
``xmodel_err`` compares the INT8 graph's tensor with the FP32 graph's (error accumulated so far).
Rows sorted by ``xmodel_err``, worst first; the last line is the logits'. Use it to decide what
``tseg-export --keep-float`` should leave in float.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def _reader(feeds: list[dict]):
    """A CalibrationDataReader over the feeds (collect_activations iterates it)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    return Reader()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fp32", type=Path)
    parser.add_argument("int8", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="dataset root with val.json")
    parser.add_argument("--val-json", default="val.json")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)

    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from tseg.export.calibration import calibration_images
    from tseg.runtime.data.coco import CocoDataset
    from tseg.runtime.segment.segmenter import Segmenter

    meta = Segmenter(args.fp32, device="cpu").metadata
    coco = CocoDataset(args.data / args.val_json, root=args.data)
    images = calibration_images(coco, count=args.images, size=meta.input_size, mean=meta.mean, std=meta.std)
    feeds = [{"image": image[None]} for image in images]
    with tempfile.TemporaryDirectory(prefix="tseg-int8-layers-") as folder:
        tmp = Path(folder)
        quant_pre_process(str(args.fp32), str(tmp / "pre.onnx"), skip_symbolic_shape=True)
        modify_model_output_intermediate_tensors(str(tmp / "pre.onnx"), str(tmp / "fp32_all.onnx"))
        modify_model_output_intermediate_tensors(str(args.int8), str(tmp / "int8_all.onnx"))
        fp32 = collect_activations(str(tmp / "fp32_all.onnx"), _reader(feeds))
        int8 = collect_activations(str(tmp / "int8_all.onnx"), _reader(feeds))
    errors = compute_activation_error(create_activation_matching(int8, fp32))
    rows = sorted(
        ((name, e.get("qdq_err"), e.get("xmodel_err")) for name, e in errors.items()),
        key=lambda row: float("inf") if row[2] is None else row[2],
    )
    print(f"{len(rows)} quantized activations, {len(feeds)} val images; SQNR in dB (higher is better)")
    print(f"{'tensor':<60} {'qdq_err':>8} {'xmodel_err':>10}")
    for name, qdq, cross in rows[: args.top]:
        print(f"{name[:60]:<60} {qdq or float('nan'):8.1f} {cross or float('nan'):10.1f}")
    logits = [row for row in rows if row[0] == "logits"]
    for name, qdq, cross in logits:
        print(f"{'(output) ' + name:<60} {qdq or float('nan'):8.1f} {cross or float('nan'):10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
