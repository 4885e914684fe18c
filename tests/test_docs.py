"""The documentation: the site builds without a warning, and no relative link points nowhere.

README.md is the site's home page (tools/mkdocs_hooks.py drops the `docs/` prefix of its links),
so its links must all go into docs/; docs/ pages link to each other relative to themselves.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HOME = DOCS / "index.md"  # generated from README.md when the site is built

# [text](target) and ![alt](target), the target up to the first space (a title may follow).
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def prose_lines(path: Path):
    """(line number, text) of the lines outside fenced code blocks."""
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield number, line


def relative_links(path: Path):
    """(line number, target) of every link that is not a URL."""
    for number, line in prose_lines(path):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, mailto:, ...
                yield number, target


def slug(heading: str) -> str:
    """The anchor GitHub and MkDocs' toc give a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return re.sub(r"\s+", "-", text)


def anchors(path: Path) -> set[str]:
    return {slug(match.group(1)) for _, line in prose_lines(path) if (match := HEADING.match(line))}


def test_every_relative_link_points_to_an_existing_file_and_heading():
    broken = []
    for source in markdown_files():
        for number, target in relative_links(source):
            file_part, _, fragment = unquote(target).partition("#")
            where = f"{source.relative_to(ROOT)}:{number}: {target}"
            destination = (source.parent / file_part).resolve() if file_part else source
            if destination == HOME and not HOME.exists():
                destination = ROOT / "README.md"
            if not destination.is_file():
                broken.append(f"{where}: no such file")
            elif source.name == "README.md" and file_part and not destination.is_relative_to(DOCS):
                broken.append(f"{where}: README.md is the site's home page, so it may link only into docs/")
            elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
                broken.append(f"{where}: no heading with the anchor #{fragment}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_check_sees_links_and_ignores_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A `code` heading, really\n[ok](page.md#a-code-heading-really) ![img](x.png)\n"
                    "`[not](a-link.md)` [web](https://example.com)\n```\n[nor](this.md)\n```\n", encoding="utf-8")
    assert list(relative_links(page)) == [(2, "page.md#a-code-heading-really"), (2, "x.png")]
    assert anchors(page) == {"a-code-heading-really"}


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed: pip install -e '.[docs]'")
def test_the_site_builds_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "Quick start" in home  # README.md became the home page
    api = (tmp_path / "site" / "api" / "models" / "index.html").read_text(encoding="utf-8")
    assert "from_pretrained" in api  # the reference was generated from the docstrings
