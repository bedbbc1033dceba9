"""The docs name only files, tests and public names that exist (docs/*.md, docs/reference/*.rst)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + sorted((ROOT / "docs").rglob("*.rst"))
TEST_SOURCES = "\n".join(p.read_text() for d in ("tests", "examples") for p in (ROOT / d).rglob("*.py"))


def test_paths_in_the_docs_exist() -> None:
    missing = []
    for page in PAGES:
        for path in re.findall(
            r"`((?:tests|trio_uring|_native|scripts|benchmarks|examples|docs)/[\w/.-]+)", page.read_text()
        ):
            if not (ROOT / path.rstrip(".")).exists():
                missing.append(f"{page.name}: {path}")
    assert not missing, missing


def test_tests_named_in_the_docs_exist() -> None:
    missing = []
    for page in PAGES:
        text = page.read_text()
        for name in set(re.findall(r"\b(test_[a-z0-9_]+)\b", text)):
            defined = re.search(rf"def {name}\b", TEST_SOURCES + text)  # the tutorial writes its own
            if not defined and not list(
                [*ROOT.glob(f"tests/**/{name}.py"), *ROOT.glob(f"examples/**/{name}.py")]
            ):
                missing.append(f"{page.name}: {name}")
    assert not missing, missing


def test_make_targets_in_the_docs_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    for page in PAGES:
        for target in re.findall(r"`make ([a-z][\w-]*)", page.read_text()):
            assert target in targets, f"{page.name}: make {target}"
