"""``device="auto"``: the rule that picks the engine, and the one note that says which it picked.

The rule, first match wins:

1. **a GPU that loads**: ONNX Runtime's CUDAExecutionProvider, when this onnxruntime offers
   it, an NVIDIA GPU is visible and the provider loads;
2. **OpenVINO on the CPU**, when the ``openvino`` package imports and lists a CPU device
   (:func:`~tseg.runtime.model.openvino.openvino_availability`), in float32 as the file is:
   bfloat16 is only ever asked for explicitly (``device="openvino"`` with
   ``OpenVinoSettings(bf16=True)``), so ``auto`` never changes a model's precision;
3. **ONNX Runtime's CPUExecutionProvider**.

``threads`` goes to whichever engine runs. The session names its engine in
``get_providers()`` (:func:`~tseg.runtime.model.session.session_device` gives the device), and
one note goes to :data:`~tseg.runtime.errors.logger` (which the CLIs show on stderr, as
``note: --device auto: running on ...``): INFO, or WARNING when an engine that is installed
could not be used (a GPU whose libraries do not load, an OpenVINO that does not import).
Library code prints nothing. An engine the rule picked that then fails on the model is an
error, never a quiet switch to the next one: OpenVINO's errors add that ``device='cpu'``
runs ONNX Runtime instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tseg.runtime.errors import TsegError, logger
from tseg.runtime.model.onnx_file import read_model_file
from tseg.runtime.model.openvino import OpenVinoSession, openvino_availability
from tseg.runtime.model.session import CUDA_EXTRA, gpu_note_wanted, ort_session, requested_providers

NOTE = "note: device='auto': running on"  # every note of the rule starts so
CPU_HINT = "device='cpu' runs ONNX Runtime instead"


def auto_session(path: Path, *, threads: int | None):
    """The session ``device="auto"`` picks for ``path`` (the rule in this module's docstring), after one note.

    Args:
        path: the .onnx file, already checked to be a regular ONNX file.
        threads: intra-op threads (OpenVINO's inference threads), already checked; None: the engine's choice.

    Returns:
        An ``onnxruntime.InferenceSession`` (CUDA or CPU) or an
        :class:`~tseg.runtime.model.openvino.OpenVinoSession` (f32).

    Raises:
        TsegError: the chosen engine cannot load the model (one line; for OpenVINO it adds
            that ``device='cpu'`` runs ONNX Runtime instead).
    """
    import onnxruntime as ort

    passed_over: list[str] = []  # why each engine before the chosen one was not taken
    warn = False
    requested = requested_providers("auto", ort.get_available_providers())
    cpu_session = None
    if requested[0] != "CPUExecutionProvider":  # a GPU ONNX Runtime offers and that is visible
        session, failure = ort_session(path, requested=requested, threads=threads)
        if requested[0] in session.get_providers():
            _note(session, passed_over, warn=False)
            return session
        cpu_session, warn = session, True  # ONNX Runtime ran it on the CPU instead
        passed_over.append("the GPU could not be used" + (f" ({failure})" if failure else ""))
    elif gpu_note_wanted():
        passed_over.append(f"this onnxruntime offers no CUDAExecutionProvider ({CUDA_EXTRA} to use the GPU)")
    openvino = openvino_availability()
    if openvino.usable:
        session = _openvino_session(path, threads=threads)
        _note(session, passed_over, warn=warn, hint=CPU_HINT)
        return session
    passed_over.append(openvino.reason)
    warn = warn or openvino.installed
    if cpu_session is None:
        cpu_session, _ = ort_session(path, requested=["CPUExecutionProvider"], threads=threads)
    _note(cpu_session, passed_over, warn=warn)
    return cpu_session


def _openvino_session(path: Path, *, threads: int | None) -> OpenVinoSession:
    """OpenVINO in f32 on ``path``; its refusals of the model say that ONNX Runtime is the other way."""
    read_model_file(path)  # a file no engine could read is refused as it is, without the hint
    try:
        return OpenVinoSession(path, threads=threads)
    except TsegError as err:
        raise TsegError(f"{err} (device='auto' chose OpenVINO; {CPU_HINT})", parameter=err.parameter) from None


def _note(session, passed_over: list[str], *, warn: bool, hint: str = "") -> None:
    """One line naming the engine that runs, why the ones before it in the rule did not, and ``hint``."""
    text = f"{NOTE} {session.get_providers()[0]}"
    if passed_over:
        text += ": " + "; ".join(passed_over)
    if hint:
        text += f"; {hint}"
    logger.log(logging.WARNING if warn else logging.INFO, text)
