"""What a finished case is judged by: its exit, its output, the sandbox before and after, its memory.

A bad-input case passes when tseg refused it cleanly: exit code 1, exactly one line on
stderr (``Error: ...``; tseg-infer's ``--device auto`` note is held back when the command
fails), no traceback, nothing on stdout, no file created outside the case's ``out/``
folder, every file that existed before unchanged (content, mode, link target), peak RSS
under the limit, no signal, no timeout. A control (``expect_ok``) must exit 0 with the same
file and memory checks. No case may print ONNX Runtime's own log lines or ANSI colour codes
on stderr. A case can ask for more by name (:data:`EXTRA_CHECKS`).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TRACEBACK = "Traceback (most recent call last)"
OUT_FOLDER = "out"
HOME_FOLDER = "home"
TEMP_SUFFIX = ".tseg-tmp"  # tseg's temp files: hidden, ending in this (tseg.runtime.files.TEMP_SUFFIX)
# Files this big are identified by size, mtime and their first and last MiB (sparse giants).
BIG_FILE = 64 << 20
EDGE = 1 << 20
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ORT_LOG = re.compile(r"\[[VIWEF]:onnxruntime:")  # "2026-01-01 10:00:00.1 [E:onnxruntime:, file.cc:12 ...]"


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (not following links): relative path -> (kind, mode, content).

    Files are identified by sha256, links by their target, folders by their mode alone.
    """
    entries: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                entries[rel] = ("link", mode, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[rel] = ("dir", mode, None)
            elif stat.S_ISREG(info.st_mode):
                entries[rel] = ("file", mode, _sha256(path) if info.st_size < BIG_FILE else _big_file_id(path, info))
            else:
                entries[rel] = ("other", mode, None)
    return entries


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _big_file_id(path: Path, info: os.stat_result) -> str:
    """A big file's identity without reading it all: size, mtime and a hash of its two ends."""
    digest = hashlib.sha256(f"{info.st_size} {info.st_mtime_ns}".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(EDGE))
        handle.seek(max(0, info.st_size - EDGE))
        digest.update(handle.read(EDGE))
    return digest.hexdigest()


def compare(before: dict[str, tuple], after: dict[str, tuple]) -> tuple[list[str], list[str]]:
    """(created outside out/, pre-existing entries changed or removed), as relative paths."""
    created = [
        rel
        for rel in sorted(after.keys() - before.keys())
        if rel != OUT_FOLDER and not rel.startswith(OUT_FOLDER + os.sep)
    ]
    changed = [rel for rel in sorted(before) if after.get(rel) != before[rel]]
    return created, changed


@dataclass
class CaseResult:
    """What happened when one case ran.

    Attributes:
        name, tool, expect_ok: from the case.
        returncode: the exit code; negative for a signal; None when the case did not run.
        timed_out: killed at the time limit.
        seconds: wall time of the child.
        peak_rss_mib: the child's peak resident memory (ru_maxrss from wait4).
        stdout, stderr: what the child printed (the first 64 KiB each).
        stderr_lines: lines on stderr (all of it, not just the head).
        outside: entries created outside out/ (relative to the sandbox).
        changed: pre-existing entries changed or removed.
        build_error: the harness could not build the case (a harness bug).
        rss_limit_mib: the peak RSS allowed.
        failures: per-image failures expected before the one ``Error:`` line (see Case); a
            list accepts any of its counts.
        skipped: why the case could not run on this machine (None: it ran).
        extra_problems: what the case's extra checks (:data:`EXTRA_CHECKS`, its verify) found.
    """

    name: str
    tool: str
    expect_ok: bool
    returncode: int | None = None
    timed_out: bool = False
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    stdout: str = ""
    stderr: str = ""
    stderr_lines: int = 0
    outside: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    build_error: str | None = None
    rss_limit_mib: float = 2048.0
    failures: int | tuple[int, ...] | list[int] = 0
    skipped: str | None = None
    extra_problems: list[str] = field(default_factory=list)

    @property
    def allowed_failures(self) -> tuple[int, ...]:
        """The per-image failure counts this case accepts."""
        return (self.failures,) if isinstance(self.failures, int) else tuple(self.failures)

    @property
    def home_writes(self) -> list[str]:
        """Entries created in the child's $HOME (caches, telemetry: still not the user's --out)."""
        return [rel for rel in self.outside if rel.startswith(HOME_FOLDER + os.sep)]

    @property
    def writes_outside(self) -> list[str]:
        """Entries created outside out/ and outside $HOME."""
        return [rel for rel in self.outside if not rel.startswith(HOME_FOLDER + os.sep)]

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.stderr

    @property
    def killed(self) -> bool:
        """Ended by a signal that the harness did not send for a timeout (e.g. SIGSEGV, OOM kill)."""
        return self.returncode is not None and self.returncode < 0 and not self.timed_out

    @property
    def memory_problem(self) -> bool:
        return self.killed or self.peak_rss_mib > self.rss_limit_mib or "MemoryError" in self.stderr

    @property
    def one_line_error(self) -> bool:
        """Exit 1 with exactly one ``Error: ...`` line on stderr and no traceback."""
        return (
            self.returncode == 1 and self.stderr_lines == 1 and self.stderr.startswith("Error: ") and not self.traceback
        ) or (
            max(self.allowed_failures) > 0 and not self.expect_ok and not self._exit_problems() and not self.traceback
        )

    @property
    def noisy_stderr(self) -> bool:
        """ONNX Runtime's own log lines or ANSI colour codes on stderr (tseg's lines are plain)."""
        return bool(ANSI_ESCAPE.search(self.stderr) or ORT_LOG.search(self.stderr))

    def problems(self) -> list[str]:
        """Each check this case failed, in words (empty: passed, or skipped)."""
        if self.skipped:
            return []
        if self.build_error:
            return [f"the harness could not build the case: {self.build_error}"]
        found = []
        if self.timed_out:
            found.append(f"timed out after {self.seconds:.0f} s")
        elif self.killed:
            found.append(f"killed by {_signal_name(-self.returncode)}")
        if self.peak_rss_mib > self.rss_limit_mib:
            found.append(f"peak RSS {self.peak_rss_mib:.0f} MiB > {self.rss_limit_mib:.0f} MiB")
        if "MemoryError" in self.stderr:
            found.append("ran out of memory under the harness's limit (MemoryError)")
        if self.traceback:
            found.append("printed a traceback")
        found += self._exit_problems()
        if self.home_writes:
            found.append(f"wrote into $HOME: {', '.join(leaves(self.home_writes)[:4])}")
        if self.writes_outside:
            found.append(f"created outside out/: {', '.join(leaves(self.writes_outside)[:4])}")
        if self.changed:
            found.append(f"changed or removed inputs: {', '.join(leaves(self.changed)[:4])}")
        if self.noisy_stderr:
            found.append("ONNX Runtime log lines or ANSI colour codes on stderr")
        return found + self.extra_problems

    def _exit_problems(self) -> list[str]:
        if self.timed_out or self.killed:
            return []
        if self.expect_ok:
            return [] if self.returncode == 0 else [f"control exited {self.returncode}, expected 0"]
        found = []
        if self.returncode != 1:
            found.append(
                "exit code 0: the bad input was accepted" if self.returncode == 0 else f"exit code {self.returncode}"
            )
        lines = self.stderr.splitlines()
        failed = self.stderr_lines - 1
        if failed not in self.allowed_failures:
            expected = " or ".join(str(1 + n) for n in self.allowed_failures)
            found.append(f"{self.stderr_lines} lines on stderr, expected {expected}")
        elif not all(line.startswith("failed: ") for line in lines[:failed]):
            found.append(f"the first {failed} stderr line(s) do not all start with 'failed: '")
        elif not lines[-1].startswith("Error: "):
            found.append("the last stderr line does not start with 'Error: '")
        if self.stdout.strip():
            found.append("printed on stdout")
        return found

    def summary(self) -> str:
        """One line: the name, the problems, and the last line of stderr."""
        last = self.stderr.strip().splitlines()[-1][:160] if self.stderr.strip() else ""
        return f"{self.name}: {'; '.join(self.problems())} | {last}"

    def describe(self) -> str:
        """A readable account for a failing test: the problems, the command's output heads."""
        lines = [f"case {self.name} ({self.tool}): exit {self.returncode}, {self.seconds:.1f} s"]
        lines[0] += f", peak RSS {self.peak_rss_mib:.0f} MiB"
        lines += [f"  - {problem}" for problem in self.problems()]
        for title, text in (("stderr", self.stderr), ("stdout", self.stdout)):
            if text.strip():
                head = text.strip().splitlines()
                shown = head[:8] + (["  ..."] + head[-4:] if len(head) > 12 else head[8:])
                lines.append(f"  {title}:")
                lines += [f"    | {line[:300]}" for line in shown]
        return "\n".join(lines)


def leaves(paths: list[str]) -> list[str]:
    """The paths that are not a parent folder of another one in the list (what was really made)."""
    prefixes = {os.path.dirname(p) for p in paths}
    return [p for p in paths if p not in prefixes]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --- extra checks a case asks for by name ----------------------------------------------------

Snapshot = dict[str, tuple]


def _under_out(rel: str) -> bool:
    return rel.startswith(OUT_FOLDER + os.sep)


def _is_temp(rel: str) -> bool:
    return _under_out(rel) and os.path.basename(rel).endswith(TEMP_SUFFIX)


def _no_temp_files(result: CaseResult, before: Snapshot, after: Snapshot) -> list[str]:
    """No tseg temp file (``.*.tseg-tmp``) anywhere under out/ once the run is over.

    The stale temp files that the case planted there may go (their removal is no lost input).
    """
    result.changed = [rel for rel in result.changed if not (_is_temp(rel) and rel not in after)]
    left = [rel for rel in after if _is_temp(rel)]
    return [f"temp files left under out/: {', '.join(left[:4])}"] if left else []


def _nothing_written(result: CaseResult, before: Snapshot, after: Snapshot) -> list[str]:
    """A refusal that must come before any work: no new file (folders aside) under out/."""
    made = [rel for rel in sorted(after.keys() - before.keys()) if _under_out(rel) and after[rel][0] != "dir"]
    return [f"wrote under out/ before refusing: {', '.join(made[:4])}"] if made else []


def _stdout_empty(result: CaseResult, before: Snapshot, after: Snapshot) -> list[str]:
    """Nothing on stdout (for controls too: "nothing but results on stdout")."""
    return [f"printed on stdout: {result.stdout.strip().splitlines()[0][:120]!r}"] if result.stdout.strip() else []


EXTRA_CHECKS: dict[str, Callable[[CaseResult, Snapshot, Snapshot], list[str]]] = {
    "no-temp-files": _no_temp_files,
    "nothing-written": _nothing_written,
    "stdout-empty": _stdout_empty,
}


def extra_problems(names: tuple[str, ...], result: CaseResult, before: Snapshot, after: Snapshot) -> list[str]:
    """The problems the named extra checks find (an unknown name is a harness bug: KeyError)."""
    return [problem for name in names for problem in EXTRA_CHECKS[name](result, before, after)]
