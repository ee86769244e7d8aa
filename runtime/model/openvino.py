"""OpenVINO Runtime on the CPU, reading tseg's exported .onnx files as they are.

On x86 CPUs OpenVINO's kernels beat ONNX Runtime's on the same files (bf16 where the CPU
has it, INT8 QDQ files, f32 about even). Precision is the user's choice, never a silent
change: OpenVINO's default precision hint on a BF16 CPU is bf16, so f32 is asked for
explicitly and bf16 only with :attr:`OpenVinoSettings.bf16`.

:class:`OpenVinoSession` offers the part of ``onnxruntime.InferenceSession`` that tseg
uses (``get_inputs``, ``get_outputs``, ``get_modelmeta``, ``get_providers``, ``run``), so
the :class:`~tseg.runtime.segment.segmenter.Segmenter` and the pipeline run it unchanged.
The graph's inputs, outputs and tseg metadata are read from the .onnx file itself, as
ONNX Runtime reports them. Compiled models are cached in ``CACHE/openvino`` (tseg's cache
folder), so a second start skips compilation.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from tseg.runtime.cache_dir import default_cache_dir, make_cache_folder
from tseg.runtime.errors import TsegError
from tseg.runtime.model.onnx_file import read_model_file

OPENVINO_EXTRA = "pip install 'tseg[openvino]'"
PROVIDER = "OpenVINO CPU"  # what get_providers() names, as ONNX Runtime names its providers


@dataclass(frozen=True)
class OpenVinoSettings:
    """How OpenVINO runs a model (``device='openvino'``).

    Attributes:
        bf16: compute in bfloat16 where the CPU has it (a precision change: judge it with
            tseg-export's gate); False runs in float32, as the file is.
        cache_dir: tseg's cache folder (compiled models go to ``cache_dir/openvino``);
            None: :func:`~tseg.runtime.cache_dir.default_cache_dir`.
    """

    bf16: bool = False
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bf16, bool):
            raise TsegError(f"OpenVinoSettings.bf16: need True or False, got {self.bf16!r:.40}", parameter="bf16")
        if self.cache_dir is not None:
            if not isinstance(self.cache_dir, (str, os.PathLike)):
                raise TsegError(
                    f"OpenVinoSettings.cache_dir: need a folder path or None, got {self.cache_dir!r:.60}",
                    parameter="cache_dir",
                )
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))

    @property
    def precision(self) -> str:
        """OpenVINO's inference precision hint: "bf16" or "f32"."""
        return "bf16" if self.bf16 else "f32"


def _telemetry_opted_in() -> bool:
    """Whether the user opted in to OpenVINO's telemetry (its ``opt_in_out --opt_in`` wrote "1")."""
    if sys.platform == "win32":
        folder = Path(os.environ.get("LOCALAPPDATA", "")) / "Intel Corporation"
    else:
        folder = Path.home() / "intel"
    try:
        return (folder / "openvino_telemetry").read_text(encoding="ascii", errors="replace").strip() == "1"
    except OSError:
        return False


def import_openvino():
    """The ``openvino`` module, or a TsegError naming what to install.

    ``import openvino`` starts its converter's telemetry, opted in by default: it writes a client
    id and counters under ``~/intel`` and reports usage. Unless the user opted in, the import runs
    with ``openvino_telemetry`` hidden, so OpenVINO takes its own no-op stub.
    """
    try:
        return _import_quietly()
    except ImportError as err:
        raise TsegError(f"device='openvino' needs {_import_failure(err)}", parameter="device") from None


def _import_quietly():
    """``import openvino`` with its telemetry off unless the user opted in; raises what the import raises."""
    if "openvino" in sys.modules and sys.modules["openvino"] is not None:
        return sys.modules["openvino"]
    hide = "openvino_telemetry" not in sys.modules and not _telemetry_opted_in()
    if hide:
        sys.modules["openvino_telemetry"] = None  # import openvino_telemetry -> ImportError
    try:
        import openvino
    finally:
        if hide and sys.modules.get("openvino_telemetry", 0) is None:
            del sys.modules["openvino_telemetry"]  # the user's own later imports get the real package
    return openvino


def _openvino_installed() -> bool:
    """The ``openvino`` package is on the path (whether or not it imports)."""
    try:
        return importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):  # a half-imported module in sys.modules
        return True


def _import_failure(err: ImportError) -> str:
    """Why ``import openvino`` failed, naming what to install: "OpenVINO Runtime, which is not installed: ..."."""
    if _openvino_installed():  # a broken install: its own error says what is wrong
        return f"OpenVINO Runtime, which is installed but does not import ({openvino_reason(err)}): {OPENVINO_EXTRA}"
    return f"OpenVINO Runtime, which is not installed: {OPENVINO_EXTRA}"


@dataclass(frozen=True)
class Availability:
    """Whether OpenVINO can run models on this machine's CPU (``device="auto"`` asks before choosing it).

    Attributes:
        usable: ``openvino`` imports and lists a CPU device.
        reason: why not, one clause naming what to install or what failed ("" when usable).
        installed: the package is there (then an unusable OpenVINO is worth a warning, not a note).
    """

    usable: bool
    reason: str = ""
    installed: bool = True


def openvino_availability() -> Availability:
    """Whether ``import openvino`` works (telemetry kept off, as :func:`import_openvino` does) and
    OpenVINO lists a CPU device. Never raises: what fails is the returned reason."""
    if not _openvino_installed():
        return Availability(False, f"OpenVINO is not installed ({OPENVINO_EXTRA} to use it)", installed=False)
    try:
        devices = list(_import_quietly().Core().available_devices)
    except ImportError as err:
        return Availability(False, f"OpenVINO did not import ({openvino_reason(err)})")
    except Exception as err:  # OpenVINO's own errors (RuntimeError with C++ context)
        return Availability(False, f"OpenVINO did not start ({openvino_reason(err)})")
    if "CPU" not in devices:
        return Availability(False, f"OpenVINO lists no CPU device (only {', '.join(devices) or 'none'})")
    return Availability(True)


def check_bf16(core=None) -> None:
    """Refuses bfloat16 where OpenVINO is missing or the CPU has no bfloat16 instructions.

    Raises:
        TsegError: one line naming what to install, or that the CPU lacks BF16.
    """
    core = core if core is not None else import_openvino().Core()
    if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise TsegError(
            "bf16: this CPU has no bfloat16 instructions (OpenVINO lists none); run the model in f32 or INT8",
            parameter="bf16",
        )


def _remove_empty(folders: list[Path]) -> None:
    """Removes the folders (deepest first) that are still empty: a refused model leaves no cache behind."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (another process's cache), or already gone
            return


def _compile_config(settings: OpenVinoSettings, threads: int | None, core, cache: Path) -> dict[str, object]:
    """OpenVINO's CPU properties for one model: precision, threads, one latency stream, cache."""
    if settings.bf16:
        check_bf16(core)
    config: dict[str, object] = {
        "INFERENCE_PRECISION_HINT": settings.precision,
        "PERFORMANCE_HINT": "LATENCY",  # one stream: batches come one at a time per request
        "CACHE_DIR": str(cache),
    }
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def openvino_reason(err: BaseException) -> str:
    """The gist of an OpenVINO error in one line: its C++ frames ("Exception from ...", "Check ...
    failed at ...") left out, e.g. "Model wasn't fully converted. ... No conversion rule found for
    operations: custom.Op"."""
    lines = [line.strip() for line in str(err).splitlines()]
    gist = [line for line in lines if line and not line.startswith(("Exception from ", "Check '"))]
    return (" ".join(gist) or type(err).__name__)[:300]


class OpenVinoSession:
    """An OpenVINO compiled model behind the ``onnxruntime.InferenceSession`` calls tseg makes.

    ``run`` is thread-safe: each call takes an idle infer request from a pool (making one
    when all are busy), so the pipeline's threads can overlap their batches.

    Args:
        model_path: the .onnx file (checked to be a regular ONNX file first).
        threads: OpenVINO's inference threads; None lets it choose.
        settings: precision and cache folder.

    Raises:
        TsegError: OpenVINO missing, the file not an ONNX model or one OpenVINO cannot
            read or compile, bf16 on a CPU without it.
    """

    def __init__(
        self, model_path: str | Path, *, threads: int | None = None, settings: OpenVinoSettings | None = None
    ) -> None:
        ov = import_openvino()
        self.path = Path(model_path)
        self.settings = settings or OpenVinoSettings()
        self._file = read_model_file(self.path)  # checks the file first (a regular ONNX file)
        core = ov.Core()
        cache = (self.settings.cache_dir or default_cache_dir()).expanduser().absolute() / "openvino"
        config = _compile_config(self.settings, threads, core, cache)
        made = make_cache_folder(cache, engine="OpenVINO")
        try:
            self.compiled = core.compile_model(str(self.path), "CPU", config)  # also run bare by benchmarks
        except Exception as err:  # OpenVINO raises RuntimeError with multi-line C++ context
            _remove_empty(made)
            raise TsegError(f"{self.path} is not a model OpenVINO can run: {openvino_reason(err)}") from None
        self._output = self.compiled.output(0)
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    def get_inputs(self) -> list:
        """The graph's inputs as the .onnx file declares them (name, shape, type)."""
        return list(self._file.inputs)

    def get_outputs(self) -> list:
        """The graph's outputs as the .onnx file declares them."""
        return list(self._file.outputs)

    def get_modelmeta(self) -> SimpleNamespace:
        """The file's metadata properties, as ``custom_metadata_map``."""
        return SimpleNamespace(custom_metadata_map=dict(self._file.props))

    def get_providers(self) -> list[str]:
        """What runs the model, with its precision: e.g. ["OpenVINO CPU (f32)"]."""
        return [f"{PROVIDER} ({self.settings.precision})"]

    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The first output for one input batch, as ``InferenceSession.run`` returns it.

        Args:
            output_names: ignored beyond the first output (tseg asks for the logits only).
            feed: {input name: (N, 3, H, W) float32 batch}.
        """
        (batch,) = feed.values()
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            result = request.infer({0: np.ascontiguousarray(batch)})
            logits = np.array(result[self._output], copy=True)  # the request's buffer is reused
        except RuntimeError as err:  # the gist first: callers report the first line
            raise RuntimeError(openvino_reason(err)) from None
        finally:
            self._idle.put(request)
        return [logits]
