"""``rdispy.logger``: dispy's module logger, so that ``dispy.logger.DEBUG`` and
``dispy.logger.setLevel(...)`` in dispy programs work on rdispy's ``logging`` logger."""

from __future__ import annotations

import logging
from typing import Any


class DispyLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The ``rdispy`` logger with dispy's (pycos) level names as attributes."""

    DEBUG = logging.DEBUG
    INFO = logging.INFO
    WARNING = logging.WARNING
    WARN = logging.WARNING
    ERROR = logging.ERROR
    CRITICAL = logging.CRITICAL

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def show_ms(self, show: bool) -> None:
        """pycos's switch for milliseconds in log times; logging's format decides here."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return msg, kwargs


logger = DispyLogger(logging.getLogger("rdispy"))
