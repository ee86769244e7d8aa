"""What a command reads and what it writes, kept apart by identity before any work.

Every tseg command lists its outputs (:class:`Output`) and its inputs (:class:`Input`) and
calls :func:`check_outputs` once, before it reads an image or opens a model. Paths are
compared by identity (device and inode), not by spelling, so relative paths, ``..``,
symbolic links, hard links and bind mounts cannot slip an output onto an input. An
output is refused when:

- it is one of the inputs (a file output), or is or lies in an input folder;
- something other than what tseg writes stands in its place (a folder, a FIFO or a device
  where a file goes; a link where a file goes, since replacing it would drop the link);
- its path cannot be resolved (a symbolic-link loop, a name too long) or a file stands
  where one of its folders must be made;
- two outputs are the same, or a file output lies in a folder output.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tseg.runtime.errors import TsegError

Identity = tuple[int, int]  # (st_dev, st_ino)


@dataclass(frozen=True)
class Output:
    """Something a command writes.

    Attributes:
        option: how the user named it: a parameter's name ("out", "submission"), which the
            CLIs show as their flag, or a description ("the parity report").
        path: where it goes.
        folder: a folder of results (else one file).
    """

    option: str
    path: Path
    folder: bool = False


@dataclass(frozen=True)
class Input:
    """Something a command reads.

    Attributes:
        option: how the user named it: a parameter's name ("model", "paths") or a description.
        path: the file or folder.
        folder: a folder whose content is read (nothing may be written in it).
    """

    option: str
    path: Path
    folder: bool = False


def resolve(path: str | Path, *, what: str) -> Path:
    """``path`` made absolute with every link followed (the part that exists).

    Raises:
        TsegError: a symbolic-link loop or a name too long, naming ``what``.
    """
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as err:  # Python < 3.13 raises RuntimeError for a loop
        if isinstance(err, RuntimeError) or err.errno == errno.ELOOP:
            message = f"{what} {path}: its path has a symbolic-link loop"
            raise TsegError(message, parameter=parameter_named(what)) from None
        raise TsegError(f"{what} {path}: {err.strerror or err}", parameter=parameter_named(what)) from None


def parameter_named(what: str) -> str | None:
    """``what`` when it is a parameter's name (``out``), for :attr:`TsegError.parameter`; else None (a description)."""
    return what if what.isidentifier() else None


def identity(path: str | Path) -> Identity | None:
    """(device, inode) of what ``path`` leads to, links followed; None when nothing is there."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def kind_of(mode: int) -> str:
    """'a file', 'a folder', 'a FIFO', 'a device' ... for an ``st_mode``."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a file" if stat.S_ISREG(mode) else "a special file"


def describe(path: str | Path) -> str | None:
    """What stands at ``path`` itself ("a file", "a folder", "a FIFO", ...), links not followed; None if nothing."""
    try:
        return kind_of(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return None


def _chain(resolved: Path) -> list[Identity]:
    """The identities of ``resolved`` (where it exists) and of each folder above it."""
    found = []
    for part in (resolved, *resolved.parents):
        ident = identity(part)
        if ident is not None:
            found.append(ident)
    return found


class Inputs:
    """A command's inputs by identity, to ask whether a path is one of them or lies in one.

    Args:
        entries: the inputs; missing ones are left out (their own checks say so).
    """

    def __init__(self, entries: Iterable[Input]) -> None:
        self.files: dict[Identity, Input] = {}
        self.folders: dict[Identity, Input] = {}
        for entry in entries:
            ident = identity(entry.path)
            if ident is None:
                continue
            (self.folders if entry.folder else self.files).setdefault(ident, entry)

    def same_file(self, path: str | Path) -> Input | None:
        """The input that ``path`` is (any spelling, hard link, bind mount), if any.

        An existing file is also looked for among the files inside the input folders (a
        hard link or bind mount of a dataset image, say): that walk is made only for an
        output that already exists, the one case where tseg would replace something.
        """
        ident = identity(path)
        if ident is None:
            return None
        found = self.files.get(ident) or self.folders.get(ident)
        if found is None and os.path.isfile(path):
            for folder in self.folders.values():
                found = _find_inside(folder, ident)
                if found is not None:
                    break
        return found

    def folder_holding(self, resolved: Path) -> Input | None:
        """The input folder that ``resolved`` is or lies in, if any."""
        for ident in _chain(resolved):
            if ident in self.folders:
                return self.folders[ident]
        return None

    def check_target(self, path: Path, *, what: str) -> None:
        """Refuses one file that a command will write (a label PNG, a report) if it is an input.

        Raises:
            TsegError: ``path`` is an input file or an input folder.
        """
        clash = self.same_file(path)
        if clash is not None:
            raise TsegError(f"{what} {path} is the input {_named(clash)}: tseg never replaces its inputs")


def _find_inside(folder: Input, ident: Identity) -> Input | None:
    """The file under ``folder`` with identity ``ident``, as an input of the same option (links not followed)."""
    stack = [Path(folder.path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.inode() == ident[1] and identity(entry.path) == ident:
                        return Input(f"a file in {folder.option} {folder.path}", Path(entry.path))
        except OSError:  # an unreadable sub-folder holds nothing tseg reads either
            continue
    return None


def _named(entry: Input) -> str:
    return f"{entry.path} ({entry.option})"


def _check_place(output: Output) -> None:
    """Refuses what stands at an output's place, or a file where one of its folders must be made."""
    kind = describe(output.path)
    if kind is not None:
        if output.folder and kind in ("a folder", "a symbolic link") and Path(output.path).is_dir():
            return
        if not output.folder and kind == "a file":
            return
        need = "a folder" if output.folder else "a file name (tseg writes a new file there)"
        if kind == "a symbolic link" and not output.folder:
            need = "the path of the file itself (replacing the link would drop it)"
        raise TsegError(
            f"{output.option} {output.path} is {kind}: need {need}", parameter=parameter_named(output.option)
        )
    for part in Path(output.path).absolute().parents:
        kind = describe(part)
        if kind is None:
            continue
        if not Path(part).is_dir():
            raise TsegError(
                f"{output.option} {output.path}: {part} is {kind}, so the folder cannot be made",
                parameter=parameter_named(output.option),
            )
        return


def check_outputs(outputs: Sequence[Output], inputs: Inputs | Iterable[Input]) -> None:
    """Refuses, before any work, outputs that would replace inputs or anything tseg did not write.

    Args:
        outputs: what the command will write.
        inputs: what it reads (an :class:`Inputs`, or the entries to build one).

    Raises:
        TsegError: one line naming the output and what it clashes with.
    """
    known = inputs if isinstance(inputs, Inputs) else Inputs(inputs)
    seen: dict[Path, Output] = {}
    for output in outputs:
        resolved = resolve(output.path, what=output.option)
        _check_place(output)
        clash = None if output.folder else known.same_file(resolved)
        if clash is not None:
            raise TsegError(
                f"{output.option} {output.path} is the input {_named(clash)}: choose an output that is not an input",
                parameter=parameter_named(output.option),
            )
        holder = known.folder_holding(resolved if output.folder else resolved.parent)
        if holder is not None:
            raise TsegError(
                f"{output.option} {output.path} lies in the input folder {_named(holder)}:"
                " write it outside the inputs",
                parameter=parameter_named(output.option),
            )
        _check_apart(output, resolved, seen)
        seen[resolved] = output


def _check_apart(output: Output, resolved: Path, seen: dict[Path, Output]) -> None:
    """Refuses an output that another one already names, or a file inside a folder output."""
    other = seen.get(resolved)
    if other is None:
        ident = identity(resolved)
        other = next((o for p, o in seen.items() if ident is not None and identity(p) == ident), None)
    if other is not None:
        raise TsegError(
            f"{output.option} {output.path} and {other.path} ({other.option}) are the same place",
            parameter=parameter_named(output.option),
        )
    for path, earlier in seen.items():
        file_in_folder = (earlier.folder and not output.folder and path in resolved.parents) or (
            output.folder and not earlier.folder and resolved in path.parents
        )
        if file_in_folder:
            raise TsegError(
                f"{output.option} {output.path} and {earlier.path} ({earlier.option}): a file cannot go inside"
                " the folder of results; choose places apart",
                parameter=parameter_named(output.option),
            )
