"""Low-level API: the IO manager, the op layer and the ring, for tools and advanced users."""

from ._core._bufring import BufferRing
from ._core._io_manager import UringIOManager, UringStatistics
from ._core._io_ops import accept, close, connect, nop, poll, recv_into, send, shutdown, sleep
from ._core._ops import MultishotOp, Op, OpDriver
from ._core._plain import current_driver
from ._core._ring import Batch, Ring, SetupFlags
from ._core._run import install_io_manager
from ._global import install_globally

__all__ = [
    "Batch",
    "BufferRing",
    "MultishotOp",
    "Op",
    "OpDriver",
    "Ring",
    "SetupFlags",
    "UringIOManager",
    "UringStatistics",
    "accept",
    "close",
    "connect",
    "current_driver",
    "install_globally",
    "install_io_manager",
    "nop",
    "poll",
    "recv_into",
    "send",
    "shutdown",
    "sleep",
]
