"""How one CLI command of a case runs: a small shim process that sets limits, mounts, and measures.

The shim (a fresh ``python -S``) applies the memory limit and, when the case asks, makes a
private mount namespace with its bind mounts or drops root's right to read any file; then it
spawns the CLI and reports the CLI's wait status and peak RSS to a file. A shim that cannot
do what the case needs reports ``skip REASON`` (the machine cannot run the case) or
``error REASON`` (a harness bug) instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.hardening.cases import Sandbox

MIB = 1 << 20
OUTPUT_HEAD = 64 << 10
# ru_maxrss of a process includes the RSS of whatever it was forked from before its exec
# (Linux keeps the old mm's high-water mark across exec), so the CLI is spawned from this
# small interpreter, not from the big harness process, and measured by it.
# Bind mounts are made only in the shim's own mount namespace (unshare(CLONE_NEWNS), all
# mounts made private first), so they vanish with the CLI and are never seen outside it.
# Root reads a chmod 000 folder through CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH: dropping
# both from the bounding set (PR_CAPBSET_DROP) keeps them from the CLI exec'd as root.
_LIMIT_SHIM = r"""
import ctypes, json, os, resource, sys
limit, report, spec, argv = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4:]
libc = ctypes.CDLL(None, use_errno=True)
def stop(word, text):
    with open(report, "w") as handle:
        handle.write(f"{word} {text}")
    sys.exit(0)
def call(name, *args):
    return os.strerror(ctypes.get_errno()) if getattr(libc, name)(*args) != 0 else None
if spec["binds"]:
    error = call("unshare", 0x00020000)
    if error:
        stop("skip", "no mount namespace: unshare: " + error)
    error = call("mount", None, b"/", None, 0x4000 | 0x40000, None)
    if error:
        stop("error", "cannot make the mounts private: " + error)
    for source, target in spec["binds"]:
        error = call("mount", os.fsencode(source), os.fsencode(target), None, 0x1000, None)
        if error:
            stop("error", f"cannot bind {source} at {target}: {error}")
if spec["drop_file_access"] and os.geteuid() == 0:
    for capability in (1, 2):
        error = call("prctl", 24, capability, 0, 0, 0)
        if error:
            stop("skip", "cannot drop root's file access: prctl: " + error)
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as handle:
    handle.write(f"{status} {usage.ru_maxrss}")
"""


@dataclass
class ChildRun:
    """What one command did.

    Attributes:
        returncode: the CLI's exit code, negative for a signal; None when it did not run.
        peak_rss_mib: its peak resident memory.
        timed_out: killed at the time limit.
        seconds: wall time.
        stdout, stderr: the first 64 KiB of each; stderr_lines: lines in all of stderr.
        skipped: the shim could not set the case up on this machine (the reason).
        error: the shim failed in a way that is a harness bug.
    """

    returncode: int | None = None
    peak_rss_mib: float = 0.0
    timed_out: bool = False
    seconds: float = 0.0
    stdout: str = ""
    stderr: str = ""
    stderr_lines: int = 0
    skipped: str | None = None
    error: str | None = None


def child_env(box: Sandbox, work: Path, pythonpath: str | None, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a case: HOME in the sandbox, quiet threads, a shared matplotlib cache, and
    tseg's cache folder ($XDG_CACHE_HOME/tseg) per case in the work folder, outside the sandbox."""
    # Hermetic: no caller's XDG folders, and no ORT_* switches (tseg must quiet ONNX Runtime itself).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "PYTEST_", "COV_", "ORT_"))}
    tmp = work / "tmp" / box.root.name
    tmp.mkdir(parents=True, exist_ok=True)
    # --device auto runs OpenVINO where it is installed, and OpenVINO caches each compiled model: in
    # $HOME that would be a write outside --out (a case that sets XDG_CACHE_HOME="" checks $HOME instead).
    env.update(
        HOME=str(box.home),
        XDG_CACHE_HOME=str(work / "xdg-cache" / box.root.name),
        TMPDIR=str(tmp),
        MPLCONFIGDIR=str(work / "mplconfig"),
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        COLUMNS="100",
    )
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    extra = dict(extra)
    if "PYTHONPATH" in extra and pythonpath:  # a case's own folder goes first, the --code shim stays
        extra["PYTHONPATH"] += os.pathsep + pythonpath
    env.update(extra)
    return env


def read_head(path: Path) -> tuple[str, int]:
    """(the first OUTPUT_HEAD bytes as text, the number of lines in the whole file)."""
    data = path.read_bytes()
    text = data.rstrip().decode("utf-8", errors="replace")
    return text[:OUTPUT_HEAD], (len(text.splitlines()) if text else 0)


def _wait(process: subprocess.Popen, timeout_s: float) -> bool:
    """Waits for the shim, killing its process group at the timeout; True when it timed out."""
    lock, state = threading.Lock(), {"done": False, "timed_out": False}

    def kill() -> None:
        with lock:
            if not state["done"]:
                state["timed_out"] = True
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    process.wait()
    with lock:
        state["done"] = True
    timer.cancel()
    return state["timed_out"]


def _read_report(report: Path, run: ChildRun) -> None:
    """Fills ``run`` from the shim's report (absent: the shim was killed, by the timeout or a bug)."""
    if not report.is_file():
        return
    word, _, rest = report.read_text().partition(" ")
    if word == "skip":
        run.skipped = rest
    elif word == "error":
        run.error = f"the shim failed: {rest}"
    else:
        run.returncode = os.waitstatus_to_exitcode(int(word))
        run.peak_rss_mib = int(rest) / 1024


def run_child(
    launcher: list[str], args: list[str], box: Sandbox, *, logs: Path, env: dict[str, str],
    data_limit_mib: int, timeout_s: float,
) -> ChildRun:  # fmt: skip
    """Runs one command (``launcher + args``) in the sandbox through the shim.

    Args:
        logs: folder for command.json, stdout, stderr and the shim's report (made).
        env: the child's whole environment.
    """
    logs.mkdir(parents=True, exist_ok=True)
    report = logs / "exit"
    report.unlink(missing_ok=True)
    spec = json.dumps({"binds": box.binds, "drop_file_access": box.drop_file_access})
    command = [sys.executable, "-S", "-c", _LIMIT_SHIM, str(data_limit_mib * MIB), str(report), spec]
    command += launcher + list(args)
    (logs / "command.json").write_text(json.dumps(command))
    run, start = ChildRun(), time.monotonic()
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        process = subprocess.Popen(
            command, cwd=box.root, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
        run.timed_out = _wait(process, timeout_s)
    run.seconds = time.monotonic() - start
    _read_report(report, run)
    if not report.is_file():
        run.returncode = process.returncode  # the shim was killed: the timeout, or a harness failure
    run.stdout, _ = read_head(logs / "stdout")
    run.stderr, run.stderr_lines = read_head(logs / "stderr")
    return run
