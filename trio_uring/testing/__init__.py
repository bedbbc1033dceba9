"""Testing support: the pytest plugin (``--trio-uring``) and helpers for users' suites.

The plugin is registered as the ``trio_uring`` pytest11 entry point; its fixtures
``uring_stream_pair`` and ``zc_receiver`` are available to every suite once trio-uring is
installed.
"""

from ._helpers import connected_stream_pair
from ._plugin import uring_stream_pair, zc_receiver

__all__ = ["connected_stream_pair", "uring_stream_pair", "zc_receiver"]
