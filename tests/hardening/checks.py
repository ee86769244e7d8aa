"""What a finished case is judged by: its exit, its output, the sandbox before and after, its memory.

A bad-input case passes when tseg refused it cleanly: exit code 1, exactly one line on
stderr (``Error: ...``), no traceback, nothing on stdout, no file created outside the case's
``out/`` folder, every file that existed before unchanged (content, mode, link target), peak
RSS under the limit, no signal, no timeout. A control (``expect_ok``) must exit 0 with the
same file and memory checks.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
from dataclasses import dataclass, field
from pathlib import Path

TRACEBACK = "Traceback (most recent call last)"
OUT_FOLDER = "out"
HOME_FOLDER = "home"


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
                entries[rel] = ("file", mode, _sha256(path))
            else:
                entries[rel] = ("other", mode, None)
    return entries


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
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
        failures: per-image failures expected before the one ``Error:`` line (see Case).
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
    failures: int = 0

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
        ) or (self.failures > 0 and not self.expect_ok and not self._exit_problems() and not self.traceback)

    def problems(self) -> list[str]:
        """Each check this case failed, in words (empty: passed)."""
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
        return found

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
        if self.stderr_lines != 1 + self.failures:
            found.append(f"{self.stderr_lines} lines on stderr, expected {1 + self.failures}")
        elif not all(line.startswith("failed: ") for line in lines[: self.failures]):
            found.append(f"the first {self.failures} stderr line(s) do not all start with 'failed: '")
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
