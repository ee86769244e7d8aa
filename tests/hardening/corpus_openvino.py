"""Bad input around OpenVINO (issue 20): the engine missing, precision options that do not apply,
a model OpenVINO cannot read. Each is one line on stderr, exit 1, nothing written (no cache folder
under $HOME either)."""

from __future__ import annotations

from tests.hardening.cases import Case, Sandbox
from tests.hardening.corpus_bench import FAST
from tests.hardening.corpus_infer import infer_args
from tests.hardening.corpus_torch import export_args
from tests.hardening.onnx_files import tail_model_bytes

# No XDG_CACHE_HOME (empty: ignored, as the XDG spec says), so the cache folder tseg would make is under
# the sandbox's $HOME, where the harness sees it: a model OpenVINO refuses must leave none behind.
HOME_CACHE = (("XDG_CACHE_HOME", ""),)
# A folder on the child's PYTHONPATH (relative: the child runs in the sandbox) whose ``openvino``
# fails to import, as where the extra is not installed; no bytecode is written into it.
WITHOUT_OPENVINO = (("PYTHONPATH", "inputs/no-openvino"), ("PYTHONDONTWRITEBYTECODE", "1"))


def _hide_openvino(box: Sandbox) -> None:
    box.write("no-openvino/openvino/__init__.py", "raise ImportError(\"No module named 'openvino'\")\n")


def _infer_without_openvino(box: Sandbox) -> list[str]:
    _hide_openvino(box)
    return infer_args(box, box.photos(), extra=["--device", "openvino"])


def _export_bf16_without_openvino(box: Sandbox) -> list[str]:
    _hide_openvino(box)
    return export_args(box, box.checkpoint()) + ["--precision", "fp32,bf16"]


def _bench_without_openvino(box: Sandbox) -> list[str]:
    _hide_openvino(box)
    return [box.rel(box.real_model()), *FAST, "--device", "cpu,openvino"]


def _unreadable(box: Sandbox, *device: str) -> list[str]:
    model = box.write("m/model.onnx", tail_model_bytes("unknown-op"))
    return infer_args(box, box.photos(), model=model, extra=list(device))


OPENVINO_CASES = [
    Case("openvino/infer-not-installed", "infer", _infer_without_openvino, env=WITHOUT_OPENVINO),
    Case("openvino/export-bf16-not-installed", "export", _export_bf16_without_openvino, env=WITHOUT_OPENVINO),
    Case("openvino/bench-not-installed", "bench", _bench_without_openvino, env=WITHOUT_OPENVINO),
    Case("openvino/infer-bf16-without-device", "infer",
         lambda box: infer_args(box, box.photos(), extra=["--bf16"])),
    Case("openvino/bench-bf16-without-device", "bench",
         lambda box: [box.rel(box.real_model()), *FAST, "--bf16"]),
    Case("openvino/export-unknown-precision", "export",
         lambda box: export_args(box, box.checkpoint()) + ["--precision", "fp32,bf8"]),
    Case("openvino/infer-model-it-cannot-read", "infer", lambda box: _unreadable(box, "--device", "openvino"),
         env=HOME_CACHE),
    # --device auto (the default): OpenVINO where installed (the error adds that --device cpu runs ONNX
    # Runtime), else ONNX Runtime, which refuses the unknown op as well.
    Case("openvino/infer-auto-model-it-cannot-read", "infer", _unreadable, env=HOME_CACHE),
]
