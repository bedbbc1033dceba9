"""trio-native io_uring networking with zero-copy receive.

The public API is re-exported here and in three public modules: ``trio_uring.socket``,
``trio_uring.lowlevel`` and ``trio_uring.testing``. Everything else is private.
"""

from . import lowlevel, socket
from ._core._errors import RingClosedError, UringUnavailable
from ._core._probe import ProbeReport, probe
from ._core._run import backend, run
from ._net._factory import install_socket_factory
from ._net._stream import (
    UringSocketListener,
    UringSocketStream,
    open_tcp_listeners,
    open_tcp_stream,
    serve_tcp,
)
from ._net._workers import WorkerPool, WorkersFailed, WorkerStartError, ZcConfig, serve_tcp_workers
from ._stats import Statistics, statistics
from .zerocopy._receiver import Lease, ReceiverStatistics, ZeroCopyReceiver, open_zc_receiver
from .zerocopy._zcrx import ZeroCopyUnavailable

__all__ = [
    "Lease",
    "ReceiverStatistics",
    "ZeroCopyReceiver",
    "ZeroCopyUnavailable",
    "open_zc_receiver",
    "ProbeReport",
    "RingClosedError",
    "UringSocketListener",
    "UringSocketStream",
    "UringUnavailable",
    "WorkerPool",
    "WorkerStartError",
    "WorkersFailed",
    "ZcConfig",
    "backend",
    "install_socket_factory",
    "lowlevel",
    "open_tcp_listeners",
    "open_tcp_stream",
    "probe",
    "Statistics",
    "run",
    "serve_tcp",
    "serve_tcp_workers",
    "socket",
    "statistics",
]
#: The one place the version is written (pyproject.toml reads it from here).
__version__ = "0.1.0"
