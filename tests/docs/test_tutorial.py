"""docs/tutorial.md, done as a reader would: every file written, every command run.

The page is a sequence of code blocks. A block with a caption (MyST ``{code-block}`` with
``:caption: NAME``) is a file: it is written to NAME in a fresh directory. A ``console`` block is
commands (``$ ...`` lines), each followed by the output it must print; ``...`` in the expected
output matches anything (doctest's ELLIPSIS). The commands run in that directory, in page order,
with this interpreter as ``python``. Only the two install commands are not run: the package is
installed here already, and ``make dist-check`` installs its sdist into a new venv.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
NOT_RUN = {"sudo apt install liburing-dev", "pip install trio-uring"}
BLOCK = re.compile(r"^```(\{code-block\} )?(\w+)\n(:caption: (\S+)\n\n)?(.*?)^```$", re.S | re.M)


def blocks() -> list[tuple[str, str | None, str]]:
    """(language, caption, text) of every fenced block of the page, in order."""
    return [(m[2], m[4], m[5]) for m in BLOCK.finditer(PAGE.read_text())]


def commands(text: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a console block."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("$ "):
            out.append((line[2:].strip(), ""))
        else:
            assert out, f"output before the first command: {line!r}"
            out[-1] = (out[-1][0], out[-1][1] + line)
    return out


def test_the_page_is_only_files_and_commands() -> None:
    kinds = [(lang, caption is not None) for lang, caption, _ in blocks()]
    assert len(kinds) >= 12, kinds
    for lang, captioned in kinds:
        assert captioned or lang == "console", f"a {lang} block without a file name is never run"
    assert {cmd for lang, _, text in blocks() if lang == "console" for cmd, _ in commands(text)} >= NOT_RUN


def test_every_block_of_the_tutorial(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("TRIO_URING", None)
    checker = doctest.OutputChecker()
    ran = 0
    for lang, caption, text in blocks():
        if caption is not None:
            (tmp_path / caption).write_text(text)
            continue
        assert lang == "console"
        for command, expected in commands(text):
            if command in NOT_RUN:
                assert not expected
                continue
            argv = command.split()
            assert argv[0] == "python", command
            proc = subprocess.run(
                [sys.executable, *argv[1:]],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
            if not checker.check_output(expected, proc.stdout, doctest.ELLIPSIS):
                pytest.fail(f"$ {command}\nexpected:\n{expected}\ngot:\n{proc.stdout}")
            ran += 1
    assert ran >= 6
