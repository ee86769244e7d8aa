"""The README and docs/ pages, and the fenced blocks in them (shared by tests/test_docs*.py)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# Shell words that start a line without being a command to check.
SHELL_WORDS = {"for", "do", "done", "if", "then", "fi", "cd", "export", "docker", "pip"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, with their language."""
    blocks, lines = [], page.read_text(encoding="utf-8").splitlines()
    start = lang = None
    for number, line in enumerate(lines, 1):
        if start is None and line.startswith("```"):
            start, lang, body = number, line[3:].strip().split(" ")[0], []
        elif start is not None and line.startswith("```"):
            blocks.append(Block(page, start, lang, "\n".join(body) + "\n"))
            start = None
        elif start is not None:
            body.append(line)
    assert start is None, f"{page}: a code block opened at line {start} is never closed"
    return blocks


def all_blocks(lang: str) -> list[Block]:
    return [b for page in PAGES for b in code_blocks(page) if b.lang == lang]


def command_lines(block: Block) -> list[tuple[int, list[str]]]:
    """(line, words) of each command in a shell block: continuations joined, comments dropped."""
    commands, pending, first = [], "", None
    for number, line in enumerate(block.text.splitlines(), block.line + 1):
        first = number if not pending else first
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        words = shlex.split(pending + line, comments=True)
        pending = ""
        for part in _split_on_semicolons(words):
            if part:
                commands.append((first, part))
    return commands


def _split_on_semicolons(words: list[str]) -> list[list[str]]:
    parts, current = [], []
    for word in words:
        pieces = word.split(";")
        for index, piece in enumerate(pieces):
            if piece:
                current.append(piece)
            if index < len(pieces) - 1:
                parts.append(current)
                current = []
    parts.append(current)
    return parts
