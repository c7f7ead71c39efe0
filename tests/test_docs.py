"""The README is a short front door and every page it leads to is there: links, anchors, evidence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
README_MAX_BYTES = 16 * 1024

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CITED_TEST = re.compile(r"`?(tests/[\w/]+\.py)::(\w+)")


def prose(path: Path) -> str:
    """The text of a Markdown file without its fenced code blocks (links there are examples)."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)


def anchors(path: Path) -> set[str]:
    """The heading anchors GitHub makes for a Markdown file: lower case, punctuation dropped, - for space."""
    headings = re.findall(r"^#{1,6} +(.+?) *$", prose(path), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path)) if not re.match(r"[a-z]+:", t)]


def test_the_readme_is_a_front_door_of_at_most_16_kib() -> None:
    assert len(README.read_bytes()) <= README_MAX_BYTES


def test_the_readme_quick_start_has_the_two_commands() -> None:
    quick_start = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make run" in quick_start
    assert "make test" in quick_start


def test_the_readme_links_every_docs_page() -> None:
    linked = {(README.parent / t.split("#")[0]).resolve() for t in relative_links(README)}
    assert [p.name for p in PAGES if p.resolve() not in linked] == []


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert broken == []


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_test_a_page_cites_as_evidence_exists(page: Path) -> None:
    missing = []
    for file, name in CITED_TEST.findall(page.read_text()):
        source = ROOT / file
        if not source.is_file() or not re.search(rf"^\s*def {name}\(", source.read_text(), flags=re.M):
            missing.append(f"{file}::{name}")
    assert missing == []


def test_every_page_opens_with_who_it_is_for() -> None:
    # Pulumi's guides open with the reader and what they will have at the end; so does every page here.
    openings = {p.name: prose(p).split("\n\n", 2)[1] for p in PAGES}
    assert [name for name, text in openings.items() if not text.startswith("For ")] == []
