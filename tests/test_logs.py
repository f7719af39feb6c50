"""experiments/logs.py: the project's loggers print once per message, rank 0 from INFO, other ranks from
WARNING, and configuring twice does not double the output."""
from __future__ import annotations

import io
import logging

from experiments import logs


def test_rank_aware_and_idempotent():
    buf = io.StringIO()
    try:
        logs.configure(0, stream=buf)
        logs.configure(0, stream=buf)  # a second entry point in the same process
        logging.getLogger("data").info("skipping sample k1: short (2.0 s)")
        logging.getLogger("data.pipeline").warning("a child logger")
        lines = buf.getvalue().splitlines()
        assert len(lines) == 2, lines
        assert "[rank 0] data INFO: skipping sample k1" in lines[0] and "data.pipeline WARNING" in lines[1]
        other = io.StringIO()
        logs.configure(3, stream=other)
        logging.getLogger("data").info("not shown on rank 3")
        logging.getLogger("experiments").warning("shown")
        assert other.getvalue().count("\n") == 1 and "[rank 3] experiments WARNING: shown" in other.getvalue()
    finally:
        for name in logs.LOGGERS:
            logger = logging.getLogger(name)
            for h in list(logger.handlers):
                logger.removeHandler(h)
            logger.setLevel(logging.NOTSET)
