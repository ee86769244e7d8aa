"""Where tseg-infer writes, checked before any work: nothing outside ``out``, nothing lost.

Label PNGs, overlay pictures, the reports (eval.json, errors.txt) and the submission CSV:
every target is planned up front against the run's inputs (:mod:`tseg.runtime.paths`, by
identity), so two inputs that would share a file (or a file and a folder of one name), a
target that would escape its folder, or one that would replace an input or something tseg
did not write is a one-line error before the first image is read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tseg.runtime.errors import TsegError
from tseg.runtime.files import remove_stale_temp_files
from tseg.runtime.paths import Inputs, describe, resolve

OVERLAY_SUFFIX = ".jpg"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_label_png(path: Path) -> bool:
    """True for a palette PNG (what :func:`save_label_png` writes), from its first 26 bytes."""
    with open(path, "rb") as handle:
        head = handle.read(26)
    return len(head) == 26 and head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR" and head[25] == 3


def _plan(folder: Path, relatives: Sequence[tuple[str, Path]], *, suffix: str, option: str) -> list[Path]:
    """``folder / relative`` with ``suffix`` for each input; refuses escapes, shared targets, file/folder clashes.

    ``option`` is the folder's parameter ("out", "overlay"); messages name it as ``option='folder'``.
    """
    root = resolve(folder, what=option)
    where = f"{option}={str(folder)!r}"
    targets: dict[Path, str] = {}
    for source, relative in relatives:
        try:
            target = folder / Path(relative).with_suffix(suffix)
        except ValueError:
            raise TsegError(f"{source}: cannot name its file in {where} after {str(relative)!r}") from None
        key = resolve(target, what=f"{source}: its file in {where}")
        if Path(relative).is_absolute() or root not in key.parents:
            raise TsegError(f"{source}: its file {target} would lie outside {where}")
        if key in targets:
            raise TsegError(
                f"{targets[key]} and {source} would both be written to {target}:"
                " rename one, or segment them into separate folders"
            )
        targets[key] = source
    folders = {parent: key for key in targets for parent in key.parents if parent != root and root in parent.parents}
    for key, source in targets.items():
        if key in folders:
            raise TsegError(
                f"{source} would be written to {key}, where {targets[folders[key]]} needs a folder of that name:"
                " rename one, or segment them into separate folders"
            )
    return [folder / key.relative_to(root) for key in targets]


def _check_folders(targets: list[Path], option: str) -> set[Path]:
    """The targets' folders, refused when a non-folder stands where one must be made."""
    folders = {target.parent for target in targets}
    for folder in folders:
        for part in [folder, *folder.parents]:
            kind = describe(part)
            if kind is None:
                continue
            if not part.is_dir():
                raise TsegError(f"cannot write {option} files into {folder}: {part} is {kind}, not a folder")
            break
    return folders


def plan_targets(out: Path, sources: list[tuple[str, Path]], inputs: Inputs | None = None) -> list[Path]:
    """The label PNG of each input, checked before anything is written.

    Args:
        out: the output folder.
        sources: (input as the user knows it, path relative to ``out``) pairs.
        inputs: the run's inputs (a target may not be one); None: none to check.

    Returns:
        ``out / relative`` with the suffix .png, in input order.

    Raises:
        TsegError: a target would lie outside ``out`` (``..``, absolute, a symlink
            leading out), two inputs would share a target (or one needs a folder where
            another's file goes), a target is an input, or a target exists and is not a
            label PNG (a folder, a photo: tseg replaces only its own results).
    """
    targets = _plan(out, sources, suffix=".png", option="out")
    for target in targets:
        _check_replaceable(target, inputs, what="the label PNG", option="out",
                           wrote="a label PNG (tseg replaces only its own results)", ours=_is_label_png)
    for folder in _check_folders(targets, "label PNG"):
        remove_stale_temp_files(folder)  # left by a run that was killed mid-write
    return targets


def plan_overlays(folder: Path, relatives: list[Path], inputs: Inputs | None = None) -> list[Path]:
    """The overlay picture of each input (``folder/relative`` as .jpg), checked before any work.

    The folder itself is checked with the other outputs (:func:`tseg.runtime.paths.check_outputs`).

    Raises:
        TsegError: a picture would escape the folder, two would share a name, one is an
            input, or its place is taken by something that is not a file.
    """
    targets = _plan(folder, [(str(r), r) for r in relatives], suffix=OVERLAY_SUFFIX, option="overlay")
    for target in targets:
        _check_replaceable(target, inputs, what="the overlay", option="overlay", wrote="a picture tseg wrote")
    _check_folders(targets, "overlay")
    return targets


def check_report_file(path: Path, inputs: Inputs | None = None) -> None:
    """Refuses, before any work, a report path (eval.json, errors.txt) that tseg must not replace."""
    _check_replaceable(path, inputs, what="the report", option="out", wrote="a file tseg wrote")


def _check_replaceable(target: Path, inputs: Inputs | None, *, what: str, option: str, wrote: str,
                       ours: Callable[[Path], bool] = lambda path: True) -> None:
    """Refuses a target that is one of the inputs, or that exists and is not a file tseg would replace."""
    if inputs is not None:
        inputs.check_target(target, what=what)
    kind = describe(target)
    if kind is not None and (kind != "a file" or not ours(target)):
        raise TsegError(
            f"{option}: {target} exists and is {kind}, not {wrote}: choose another folder or move it away",
            parameter=option,
        )
