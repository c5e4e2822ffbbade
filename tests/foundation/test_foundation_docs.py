"""The docs in the repository stay true: the lab file reference is what the code generates, and
the README links only files a clone has."""

from __future__ import annotations

import re
from pathlib import Path

from ionpilot.reference import lab_file_reference

ROOT = Path(__file__).resolve().parents[2]


def test_the_lab_file_reference_is_current() -> None:
    written = (ROOT / "docs" / "lab-file.md").read_text(encoding="utf-8")
    assert written == lab_file_reference(), (
        "docs/lab-file.md is out of date: run `ionpilot config reference --output docs/lab-file.md`"
    )


def test_the_reference_covers_every_section_with_units_and_comments() -> None:
    text = lab_file_reference()
    for section in (
        "LabInfo",
        "BusSettings",
        "InstrumentConfig",
        "ClockLockSettings",
        "HealthRule",
    ):
        assert f"## {section}" in text
    assert "| `probe_time` | quantity in s (time) | `80 ms` |" in text
    assert "Where: `instruments.<name>.limits.<name>`" in text
    assert (
        "| `publish_port` | whole number | `15600` | publishers connect here (hub XSUB) |" in text
    )


def test_readme_and_docs_link_only_files_that_exist() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    # the builders' working notes address them, not a reader of the clone
    pages = [p for p in pages if p.name != "CONTRIBUTING-HELPERS.md"]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "../shared/" not in text, page
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links {target}, which is missing"
