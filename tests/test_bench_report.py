"""The benchmark report's arithmetic: ratios are computed from the rows they name."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from ._util import load_module

ROOT = Path(__file__).resolve().parent.parent


def load_bench() -> ModuleType:
    return load_module("bench", ROOT / "benchmarks" / "bench.py")


def rows(*cpu: float) -> list[dict[str, Any]]:
    return [{"cpu_us_per_req": c, "per_s": 1e6 / c} for c in cpu]


def test_receiver_ratios_name_each_loop_and_pool_every_c_sink_run() -> None:
    bench = load_bench()
    rounds = {
        "bulk 1x64KiB": {"c_liburing": rows(10, 30, 14)},
        "bulk 1x64KiB zero-copy": {"c_liburing": rows(11, 12, 13), "trio_uring": rows(9, 9, 9)},
        "bulk 1x64KiB zero-copy async for": {"c_liburing": rows(20, 15, 16), "trio_uring": rows(12, 12, 12)},
    }
    results = {sc: {sv: bench.median_row(r) for sv, r in by.items()} for sc, by in rounds.items()}
    text = bench.receiver_ratios(results, rounds)
    # async for 12 against receive_batch 9; same-row C medians 16 and 12; pooled median 14
    assert "async for  12.00, receive_batch   9.00 us CPU per 64 KiB: async for = 1.33x receive_batch" in text
    assert "same row: async for 0.75x, receive_batch 0.75x" in text
    assert "median over its 9 sink runs (14.00): async for 0.86x, receive_batch 0.64x" in text
    assert "trio_uring_ring" not in text  # no rows, no line


def test_receiver_ratios_without_both_loops_say_nothing() -> None:
    bench = load_bench()
    rounds = {"bulk 1x64KiB zero-copy": {"trio_uring": rows(9)}}
    results = {sc: {sv: bench.median_row(r) for sv, r in by.items()} for sc, by in rounds.items()}
    assert bench.receiver_ratios(results, rounds) == ""
