"""The short soak (about 20 s) as part of every pytest run; ``make soak`` is the long one.

One mixed-load run (see ``soak.py``) is shared by the tests below, one per check, so a
failure names the resource that did not come back.
"""

from __future__ import annotations

import pytest

from .soak import Sample, SoakConfig, SoakReport, format_report, judge, run_soak

SECONDS = 20

# Dropped streams are part of the load: their sockets are collected unclosed and warn with
# ResourceWarning, which filterwarnings=error would turn into errors in whichever test the
# collection happens to fall. soak.py counts them (resource_warnings in the report).
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def report() -> SoakReport:
    rep = run_soak(SoakConfig(seconds=SECONDS, interval=0.5, seed=1))
    print(format_report(rep))  # shown with -s, and with the output of a failing test
    return rep


def _check(rep: SoakReport, name: str) -> None:
    c = rep.check(name)
    assert c.ok is not False, f"{name}: {c.detail}\n{format_report(rep)}"


def test_load_ran(report: SoakReport) -> None:
    """The harness itself: every kind of connection happened, so the checks mean something."""
    c = report.counters
    kinds = ("churn_close", "churn_rst", "churn_drop", "upload_ok", "download_ok", "zc_server", "zc_client")
    for key in kinds:
        assert c.get(key, 0) > 0, f"no {key} in {SECONDS} s: {c}"
    assert c.get("zc_server_early", 0) + c.get("zc_client_early", 0) > 0
    assert len(report.samples) >= SECONDS  # about two a second


def test_rss_given_back(report: SoakReport) -> None:
    """RSS after the load against before it (a 20 s run is too short to judge a trend: see
    soak.py; ``make soak`` judges "rss flat" too)."""
    _check(report, "rss given back")


def test_vmsize_flat(report: SoakReport) -> None:
    _check(report, "vmsize flat")


def test_fds_back_to_baseline(report: SoakReport) -> None:
    _check(report, "fds back to baseline")


def test_all_connections_closed(report: SoakReport) -> None:
    _check(report, "all connections closed")


def test_data_intact(report: SoakReport) -> None:
    _check(report, "data intact")


def test_no_unexpected_errors(report: SoakReport) -> None:
    _check(report, "no unexpected errors")


def test_dropped_streams_collected(report: SoakReport) -> None:
    _check(report, "dropped streams collected")


def test_pool_back_in_kernel(report: SoakReport) -> None:
    """A stream collected without close must still give its queued buffers back."""
    _check(report, "pool back in kernel")


def test_data_intact_after_early_receiver_exit(report: SoakReport) -> None:
    """A receiver leaving its block early must leave undelivered data to the stream."""
    _check(report, "data intact after early receiver exit")


def _samples(rss_mib: list[float], t0: float = 0.0, step: float = 1.0) -> list[Sample]:
    return [
        Sample(t0 + i * step, int(r * 1024), 100_000, 10, 512, 512, 0, 1, i, 0.0, 0)
        for i, r in enumerate(rss_mib)
    ]


@pytest.mark.parametrize(
    ("after_load", "ok"), [(40.0 + 16, True), (40.0 + 33, False)], ids=["given-back", "kept"]
)
def test_the_verdict_on_memory_given_back(after_load: float, ok: bool) -> None:
    """The 20 s run judges memory by what comes back after the load; a trend needs 60 s."""
    samples = _samples([40.0] + [80.0, 120.0, 70.0] * 8)
    final = _samples([after_load], t0=30.0)[0]
    checks = {
        c.name: c
        for c in judge(
            SoakConfig(seconds=20), [*samples, final], samples[0], final, load_failures={}, counters={}
        )
    }
    assert checks["rss given back"].ok is ok, checks["rss given back"]
    assert checks["rss flat"].ok is None  # 18 s of steady load: no trend judged


def test_the_verdict_on_a_trend_over_a_long_run() -> None:
    rising = _samples([40.0 + 0.5 * i for i in range(120)])  # +30 MiB/min for 2 min: a leak
    flat = _samples([40.0 + (i % 7) * 5 for i in range(120)])  # swings, no trend
    for samples, ok in ((rising, False), (flat, True)):
        final = samples[-1]
        checks = {
            c.name: c
            for c in judge(SoakConfig(seconds=120), samples, samples[0], final, load_failures={}, counters={})
        }
        assert checks["rss flat"].ok is ok, checks["rss flat"]
