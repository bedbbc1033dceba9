"""Every public name has a docstring and a place in the reference pages (docs/reference/)."""

from __future__ import annotations

import inspect
import types
from pathlib import Path
from typing import Any

import pytest

import trio_uring
import trio_uring.lowlevel
import trio_uring.socket
import trio_uring.testing

MODULES = [trio_uring, trio_uring.socket, trio_uring.lowlevel, trio_uring.testing]
REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"


def _public() -> list[tuple[str, Any]]:
    out = []
    for module in MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if not isinstance(obj, types.ModuleType):
                out.append((f"{module.__name__}.{name}", obj))
    return out


def _members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties the class itself defines (inherited ones are documented
    where they come from)."""
    return [
        (name, value)
        for name, value in vars(cls).items()
        if not name.startswith("_")
        and (callable(value) or isinstance(value, property | classmethod | staticmethod))
    ]


@pytest.mark.parametrize(("name", "obj"), _public(), ids=[n for n, _ in _public()])
def test_public_name_has_a_docstring(name: str, obj: Any) -> None:
    assert inspect.getdoc(obj), f"{name} has no docstring"
    if inspect.isclass(obj):
        for member, value in _members(obj):
            assert inspect.getdoc(getattr(obj, member)) or inspect.getdoc(value), f"{name}.{member}"


def test_every_public_name_is_in_the_reference() -> None:
    text = "\n".join(p.read_text() for p in REFERENCE.glob("*.rst"))
    missing = [name for name, _ in _public() if name.rsplit(".", 1)[1] not in text]
    assert not missing, f"not in docs/reference/: {missing}"


def test_statistics_fields_are_documented() -> None:
    import attrs  # noqa: PLC0415

    for cls in (
        trio_uring.Statistics,
        trio_uring.ReceiverStatistics,
        trio_uring.ProbeReport,
        trio_uring.lowlevel.UringStatistics,
    ):
        source = inspect.getsource(cls)
        for field in attrs.fields(cls):
            line = next(
                i for i, text in enumerate(source.splitlines()) if text.strip().startswith(f"{field.name}:")
            )
            assert source.splitlines()[line - 1].strip().startswith("#:"), f"{cls.__name__}.{field.name}"
