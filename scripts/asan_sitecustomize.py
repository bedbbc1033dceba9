"""Installed as ``build/asan/site/sitecustomize.py`` by ``scripts/asan_build.py``.

Redirects the import of ``trio_uring._native`` to the sanitized build next to this file,
for this interpreter and every child that inherits PYTHONPATH (the suite's subprocess
tests included). Only that one module is redirected, so the package itself is still the
working tree's.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

_NATIVE = Path(__file__).resolve().parent.joinpath("native_path.txt").read_text().strip()


class _AsanNative(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> Any:
        if fullname != "trio_uring._native":
            return None
        # The extension's init symbol is PyInit__native whatever the file is called.
        loader = importlib.machinery.ExtensionFileLoader(fullname, _NATIVE)
        return importlib.util.spec_from_file_location(fullname, _NATIVE, loader=loader)


sys.meta_path.insert(0, _AsanNative())
