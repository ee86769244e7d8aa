"""tseg-infer's ``--device auto`` note, for tests that read the command's stderr.

With ``--device auto`` (the default) tseg-infer says on stderr which engine the rule picked, in
one line (tseg.runtime.model.session); which engine that is depends on what is installed (OpenVINO
or not), so tests about other lines take the note out by its prefix.
"""

from __future__ import annotations

AUTO_NOTE = "note: --device auto: running on "


def without_auto_note(stderr: str) -> list[str]:
    """``stderr``'s lines less the one ``--device auto`` note, which must be there exactly once."""
    lines = stderr.splitlines()
    notes = [line for line in lines if line.startswith(AUTO_NOTE)]
    assert len(notes) == 1, f"expected one --device auto note on stderr, got {len(notes)}:\n{stderr}"
    return [line for line in lines if not line.startswith(AUTO_NOTE)]


def past_auto_note(stderr: str) -> list[str]:
    """``stderr``'s lines after the ``--device auto`` note, when the command got as far as opening the model
    (the note comes first, at most once); all of them when it stopped before."""
    lines = stderr.splitlines()
    if lines and lines[0].startswith(AUTO_NOTE):
        lines = lines[1:]
    assert not any(line.startswith(AUTO_NOTE) for line in lines), stderr
    return lines
