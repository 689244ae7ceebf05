"""How the manager logs: readable lines for a terminal (rich), or one JSON object per line for collectors.

The JSON form is a dozen lines on the standard library's Formatter, so no extra dependency: each
record becomes {"time", "level", "logger", "message"} plus "exception" when there is one.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.logging import RichHandler


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single-line JSON object."""
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(fmt: str, console: Console) -> None:
    """Send INFO and above to stderr, as rich text (`text`) or JSON lines (`json`).

    Text to anything but a terminal (a service's journal, a file) is one plain line per record:
    rich would wrap it at 80 columns there.
    """
    if fmt == "json":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif not console.is_terminal:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    else:
        handler = RichHandler(console=console, show_path=False)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler], force=True)
    # httpx logs every request at INFO: on the gateway's path to the engines that is a log line per
    # asset and keystroke, and rendering it was a fifth of the proxy's time.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
