"""tseg-infer's ``--device auto`` note, for tests that read the command's stderr.

With ``--device auto`` (the default) tseg-infer says on stderr which engine the rule picked, in
one line, once the command has run without an error (tseg.runtime.cli_errors holds it back
otherwise, so that an error stays one line). Which engine that is depends on what is
installed (OpenVINO or not), so tests about other lines take the note out by its prefix.
"""

from __future__ import annotations

AUTO_NOTE = "note: --device auto: running on "


def without_auto_note(result) -> list[str]:
    """The stderr lines of a finished command (a click ``Result`` or a ``CompletedProcess``) less the
    ``--device auto`` note, which must be there exactly once when it succeeded and never when it failed."""
    code = result.exit_code if hasattr(result, "exit_code") else result.returncode
    lines = result.stderr.splitlines()
    notes = [line for line in lines if line.startswith(AUTO_NOTE)]
    assert len(notes) == (1 if code == 0 else 0), (
        f"expected {'one' if code == 0 else 'no'} --device auto note on stderr (exit {code}):\n{result.stderr}")
    return [line for line in lines if not line.startswith(AUTO_NOTE)]
