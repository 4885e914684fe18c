"""MkDocs hook (mkdocs.yml): the site's home page is README.md, so the guide has one source.

README.md sits beside docs/, so its links into the documentation start with `docs/`; on the site,
the home page sits inside docs/, so that prefix is dropped. README.md links to nothing else
(tests/test_docs.py checks that every relative link points to a file that exists).
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

README = Path(__file__).resolve().parents[1] / "README.md"


def on_files(files: Files, config) -> Files:
    text = README.read_text(encoding="utf-8").replace("](docs/", "](")
    files.append(File.generated(config, "index.md", content=text))
    return files
