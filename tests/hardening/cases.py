"""What a harness case is: a name, a CLI, and a builder that writes its inputs into a sandbox.

Every case gets its own sandbox folder (the child's working directory)::

    <case>/inputs/   what the case hands to tseg (copied fixtures, bad files)
    <case>/out/      the only place tseg may create files
    <case>/home/     $HOME of the child (anything tseg puts there is a write outside --out)

Builders return the CLI arguments, with paths relative to the sandbox (the child's cwd).
A builder that cannot make its inputs on this machine (a device node without root, say)
raises :class:`SkipCase`: the case is reported as skipped, never as passed.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.hardening.checks import EXTRA_CHECKS
from tests.hardening.onnx_files import conv_model_bytes, metadata_props
from tests.hardening.special_files import make_special

TOOLS = ("infer", "train", "export", "plot", "bench", "report")


class SkipCase(Exception):
    """Raised by a builder that cannot make the case here; the message starts with the reason's
    category before a colon (e.g. "no device nodes: mknod needs root"), which names its totals row."""


@dataclass(frozen=True)
class Fixtures:
    """The valid artefacts the corpus is made from (read-only: cases copy them).

    Attributes:
        model: a real tiny ONNX model exported by tseg-export.
        checkpoint: the best.pt it was exported from.
        coco: root of tests/tiny_coco.py's dataset (train.json, val.json, images).
    """

    model: Path
    checkpoint: Path
    coco: Path


@dataclass(frozen=True)
class Case:
    """One bad input (or, with ``expect_ok``, one control that must succeed).

    Attributes:
        name: "<class>/<what>", e.g. "coco/polygon-nan-literal".
        tool: which CLI runs it: infer, train, export, plot, bench or report.
        build: writes the inputs into the sandbox and returns the CLI arguments.
        expect_ok: a control: exit 0 expected (checks the harness itself).
        failures: images expected to fail one by one in a run that carries on (tseg-infer):
            exit 1 with that many ``failed: PATH: reason`` lines, then one ``Error:`` summary;
            a tuple accepts any of its counts (0: a one-line refusal before any work).
        checks: extra checks by name (:data:`tests.hardening.checks.EXTRA_CHECKS`), e.g.
            "no-temp-files" for a run that must leave no temp file under out/.
        verify: a check of this case alone: called with the sandbox root after the run,
            returns the problems found (e.g. a record that a second command lost).
        setup: a command run first in the same sandbox (it must exit 0; its output is not
            judged); the sandbox is compared from before the setup.
        timeout_s: this case's time limit (default: the run's).
        rss_limit_mib: this case's peak RSS limit (default: its tool's).
        env: variables added to the child's environment.
    """

    name: str
    tool: str
    build: Callable[[Sandbox], list[str]]
    expect_ok: bool = False
    failures: int | tuple[int, ...] = 0
    checks: tuple[str, ...] = ()
    verify: Callable[[Path], list[str]] | None = None
    setup: Setup | None = None
    timeout_s: float | None = None
    rss_limit_mib: float | None = None
    env: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.tool not in TOOLS or (self.setup is not None and self.setup.tool not in TOOLS):
            raise ValueError(f"unknown tool {self.tool!r} for case {self.name}")
        unknown = [name for name in self.checks if name not in EXTRA_CHECKS]
        if unknown:
            raise ValueError(f"unknown check {unknown[0]!r} for case {self.name}; valid: {', '.join(EXTRA_CHECKS)}")

    @property
    def slug(self) -> str:
        """The case name as one folder name."""
        return self.name.replace("/", "__")


@dataclass(frozen=True)
class Setup:
    """A command a case runs before its checked one (see :attr:`Case.setup`).

    Attributes:
        tool: which CLI.
        build: called after the case's own builder; returns the setup's arguments.
    """

    tool: str
    build: Callable[[Sandbox], list[str]]


class Sandbox:
    """A case's folders and helpers to fill ``inputs/``.

    Args:
        root: the case's folder (created, must not exist yet).
        fixtures: the valid artefacts to copy from.
    """

    def __init__(self, root: Path, fixtures: Fixtures) -> None:
        self.root = root
        self.fixtures = fixtures
        self.inputs = root / "inputs"
        self.out = root / "out"
        self.home = root / "home"
        for folder in (self.inputs, self.out, self.home):
            folder.mkdir(parents=True)
        self.binds: list[tuple[str, str]] = []
        self.drop_file_access = False

    def bind(self, source: Path, target: Path) -> Path:
        """Has ``source`` mounted at ``target`` in the child's own mount namespace (a bind mount).

        ``target`` is made here as an empty folder or file (what the harness sees before and
        after: the mount exists only for the child's lifetime, in its namespace). A machine
        without mount namespaces reports the case as skipped.
        """
        if source.is_dir():
            target.mkdir(parents=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        self.binds.append((str(source.absolute()), str(target.absolute())))
        return target

    def unreadable(self, folder: Path) -> Path:
        """Makes ``folder`` unreadable to the child: mode 000, and root's override dropped for the run."""
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0)
        self.drop_file_access = True
        return folder

    def special(self, relative: str | Path, kind: str) -> Path:
        """A special file (see :func:`~tests.hardening.special_files.make_special`) at inputs/``relative``
        (an absolute path is used as it is)."""
        path = self.inputs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return make_special(path, kind)
        except PermissionError as err:
            raise SkipCase(f"no device nodes: {kind} needs root ({err.strerror})") from None

    def rel(self, path: Path) -> str:
        """``path`` as the child sees it (relative to its cwd, the sandbox root)."""
        return str(path.relative_to(self.root))

    def write(self, relative: str, data: bytes | str) -> Path:
        """Writes a file under inputs/ (parents created)."""
        path = self.inputs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def coco(self, name: str = "coco") -> Path:
        """A private copy of the tiny COCO dataset under inputs/ (train.json, val.json, images)."""
        target = self.inputs / name
        if not target.exists():
            shutil.copytree(self.fixtures.coco, target)
        return target

    def photos(self) -> Path:
        """inputs/photos with two valid images (a.jpg RGB, b.png grayscale)."""
        folder = self.inputs / "photos"
        if not folder.exists():
            folder.mkdir()
            shutil.copyfile(self.fixtures.coco / "rgb" / "000.jpg", folder / "a.jpg")
            shutil.copyfile(self.fixtures.coco / "gray" / "001.png", folder / "b.png")
        return folder

    def model(self, name: str = "model.onnx", *, props: dict[str, str] | None = None, **kwargs) -> Path:
        """A hand-built 1x1-conv model under inputs/ (valid tseg metadata unless ``props`` given)."""
        props = metadata_props() if props is None else props
        return self.write(name, conv_model_bytes(props=props, **kwargs))

    def real_model(self, name: str = "real.onnx") -> Path:
        """A copy of the real tiny exported model."""
        target = self.inputs / name
        shutil.copyfile(self.fixtures.model, target)
        return target

    def checkpoint(self, relative: str = "run/best.pt") -> Path:
        """A copy of the real tiny checkpoint."""
        target = self.inputs / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.fixtures.checkpoint, target)
        return target

    def checkpoint_variant(self, relative: str, change: Callable[[dict], object]) -> Path:
        """torch.save of the real checkpoint's payload after ``change(payload)`` (a shallow copy)."""
        import torch

        payload = dict(_real_payload(self.fixtures.checkpoint))
        payload["model"] = dict(payload["model"], kwargs=dict(payload["model"]["kwargs"]))
        result = change(payload)
        target = self.inputs / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload if result is None else result, target)
        return target


_payload_lock = threading.Lock()
_payloads: dict[Path, dict] = {}


def _real_payload(checkpoint: Path) -> dict:
    """The real checkpoint, loaded once per process (cases copy before changing it)."""
    import torch

    with _payload_lock:
        if checkpoint not in _payloads:
            _payloads[checkpoint] = torch.load(checkpoint, map_location="cpu", weights_only=True)
        return _payloads[checkpoint]
