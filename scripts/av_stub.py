"""Stand-in for PyAV (`av`), installed by scripts/install_lerobot.sh only when PyAV's wheel
cannot be installed. LeRobot's datasets module imports `av` at import time and reads
`av.logging.WARNING`; its policies never decode video. Any real use fails loudly."""

import logging as _logging
import types as _types

logging = _types.SimpleNamespace(WARNING=_logging.WARNING, ERROR=_logging.ERROR, INFO=_logging.INFO,
                                 set_level=lambda level: None)
__version__ = "0.0.0+expo-sdk-stub"


def open(*args, **kwargs):  # noqa: A001
    raise ImportError("PyAV is not installed (this is a stub): video datasets cannot be decoded")
