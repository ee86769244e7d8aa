"""The README's and docs/ pages' links resolve, and the README fits on a screen."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs_pages import PAGES, README, ROOT, code_blocks, command_lines

# ---------------------------------------------------------------------------------------- links


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings (lower case, punctuation dropped, spaces to '-')."""
    anchors, seen = set(), {}
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    for title in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link outside code."""
    found, fenced = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            line = re.sub(r"`[^`]*`", "", line)
            found += [(number, target) for target in re.findall(r"\]\(([^)\s]+)\)", line)]
    return found


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_links_resolve(page):
    for line, target in links(page):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}:{line}: {target} does not exist"
        assert ROOT in resolved.parents or resolved == ROOT, f"{page.name}:{line}: {target} leaves the repository"
        if anchor:
            assert resolved.suffix == ".md", f"{page.name}:{line}: an anchor into {resolved.name}"
            assert anchor in heading_anchors(resolved), (
                f"{page.name}:{line}: {resolved.name} has no heading #{anchor}"
                f" (has: {', '.join(sorted(heading_anchors(resolved)))})"
            )


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for _, t in links(README)}
    assert not [p.name for p in PAGES[1:] if p.resolve() not in linked]


def test_link_checker_sees_anchors():
    assert "the-accuracy-gate" in heading_anchors(ROOT / "docs" / "deployment.md")
    assert "gpu-status" in heading_anchors(README)


def test_readme_fits_on_a_screen():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, len(lines)
    first_block = code_blocks(README)[0]
    assert first_block.line == 3 and [w[:2] for _, w in command_lines(first_block)] == [
        ["make", "demo"],
        ["make", "test"],
    ]
