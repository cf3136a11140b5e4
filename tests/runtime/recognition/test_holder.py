"""The holder's own log lines: ids and bundle names escaped, whoever calls it."""

from __future__ import annotations

import logging

from muselens.runtime.recognition.holder import ModelHolder
from tests.runtime.server.conftest import rgb


def test_an_enrolment_id_with_a_newline_forges_no_log_line(served, query_images, caplog):
    """The servicer refuses such ids; the holder, a library API, must not log them raw either."""
    holder = ModelHolder(served)
    with caplog.at_level(logging.INFO, logger="muselens.runtime.recognition.holder"):
        holder.enroll("x\n2026-01-01 INFO forged \u202e", "", {}, [rgb(query_images[0])])
    messages = [record.getMessage() for record in caplog.records]
    assert messages and not any("\n" in m or "\u202e" in m for m in messages)
    assert "x\\n2026-01-01 INFO forged \\u202e" in messages[-1]
