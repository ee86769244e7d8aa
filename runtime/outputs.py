"""Where tseg-infer writes, checked before any work: nothing outside --out, nothing lost.

Label PNGs, overlay pictures, the reports (eval.json, errors.txt) and the submission CSV:
every target is planned up front, so two inputs that would share a file, a target that
would escape its folder, or one that would replace something tseg did not write is a
one-line error before the first image is read.
"""

from __future__ import annotations

from pathlib import Path

from tseg.runtime.errors import TsegError
from tseg.runtime.files import check_outputs_apart, is_within, remove_stale_temp_files

OVERLAY_SUFFIX = ".jpg"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_label_png(path: Path) -> bool:
    """True for a palette PNG (what :func:`save_label_png` writes), from its first 26 bytes."""
    with open(path, "rb") as handle:
        head = handle.read(26)
    return len(head) == 26 and head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR" and head[25] == 3


def check_out_folder(out: Path, inputs: list[Path]) -> None:
    """Refuses an --out that is a file, or that is or lies inside an input folder.

    Args:
        out: the output folder (created later if missing).
        inputs: input folders, or files (whose folder counts).

    Raises:
        TsegError: naming the clash.
    """
    if out.exists() and not out.is_dir():
        raise TsegError(f"--out {out} is an existing file: need a folder for the label PNGs")
    check_outputs_apart(out, inputs)


def plan_targets(out: Path, sources: list[tuple[str, Path]]) -> list[Path]:
    """The label PNG of each input, checked before anything is written.

    Args:
        out: the output folder.
        sources: (input as the user knows it, path relative to ``out``) pairs.

    Returns:
        ``out / relative`` with the suffix .png, in input order.

    Raises:
        TsegError: a target would lie outside ``out`` (``..``, absolute, a symlink
            leading out), two inputs would share a target, or a target exists and
            is not a label PNG (a folder, a photo: tseg replaces only its own results).
    """
    targets: dict[Path, tuple[str, Path]] = {}
    for source, relative in sources:
        try:
            target = out / Path(relative).with_suffix(".png")
        except ValueError:
            raise TsegError(f"{source}: cannot name a label PNG after {str(relative)!r}") from None
        if Path(relative).is_absolute() or not is_within(target, out):
            raise TsegError(f"{source}: its label PNG {target} would lie outside --out {out}")
        key = target.resolve()
        if key in targets:
            raise TsegError(
                f"{targets[key][0]} and {source} would both be written to {target}:"
                " rename one, or segment them into separate --out folders"
            )
        if target.exists() and (not target.is_file() or not _is_label_png(target)):
            raise TsegError(
                f"{target} exists and is not a label PNG (tseg replaces only its own results):"
                " choose another --out or move it away"
            )
        targets[key] = (source, target)
    folders = {target.parent for _, target in targets.values()}
    for folder in folders:
        _check_folder_path(folder)
    for folder in folders:
        remove_stale_temp_files(folder)  # left by a run that was killed mid-write
    return [target for _, target in targets.values()]


def _check_folder_path(folder: Path) -> None:
    """Refuses a target folder that cannot be made because a file stands in its path."""
    for part in [folder, *folder.parents]:
        if part.exists():
            if not part.is_dir():
                raise TsegError(f"cannot write label PNGs into {folder}: {part} is a file, not a folder")
            return


def plan_overlays(folder: Path, relatives: list[Path], inputs: list[Path]) -> list[Path]:
    """The --overlay picture of each input (``folder/relative`` as .jpg), checked before any work.

    Raises:
        TsegError: the folder overlaps an input folder or is a file, or a picture's place
            is taken by something that is not a file.
    """
    if folder.exists() and not folder.is_dir():
        raise TsegError(f"--overlay {folder} is an existing file: need a folder for the pictures")
    check_outputs_apart(folder, inputs, what="--overlay")
    targets = [folder / Path(relative).with_suffix(OVERLAY_SUFFIX) for relative in relatives]
    for target in targets:
        if not is_within(target, folder):
            raise TsegError(f"the overlay {target} would lie outside --overlay {folder}")
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise TsegError(f"{target} exists and is not a picture tseg wrote: choose another --overlay")
    return targets


def check_report_file(path: Path) -> None:
    """Refuses, before any work, a report path (eval.json, errors.txt) that tseg must not replace."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise TsegError(f"{path} exists and is not a file tseg wrote: choose another --out or move it away")


def check_submission_path(path: Path, inputs: list[Path]) -> None:
    """Refuses a --submission that is a folder or a link, or lies in the data folder, before any work."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise TsegError(f"--submission {path} exists and is not a file: need a .csv file name")
    for source in inputs:
        if is_within(path, source):
            raise TsegError(f"--submission {path} lies in the input folder {source}: write it outside the data")
