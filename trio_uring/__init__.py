"""trio-native io_uring networking with zero-copy receive.

The public API is re-exported here and only here; everything else is private.
"""

from . import lowlevel
from ._core._errors import RingClosedError, UringUnavailable
from ._core._probe import ProbeReport, probe
from ._core._run import backend, run

__all__ = ["ProbeReport", "RingClosedError", "UringUnavailable", "backend", "lowlevel", "probe", "run"]
__version__ = "0.1.0"
