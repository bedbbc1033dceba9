"""trio-native io_uring networking with zero-copy receive.

The public API is re-exported here and only here; everything else is private.
"""

from ._core._errors import RingClosedError, UringUnavailable
from ._core._probe import ProbeReport, probe

__all__ = ["ProbeReport", "RingClosedError", "UringUnavailable", "probe"]
__version__ = "0.1.0"
