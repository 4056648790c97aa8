"""``MEMSTREAM_LOG_FORMAT=json``: one JSON object per log line."""

import json
import logging
import sys

from memstream.logs import JsonFormatter


def test_a_json_line_carries_time_level_logger_message_and_error() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "memstream.x", logging.ERROR, __file__, 1, "flush %s failed", ("f1",), sys.exc_info()
        )
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["logger"], line["message"]) == ("ERROR", "memstream.x", "flush f1 failed")
    assert line["at"].endswith("+00:00") and "ValueError: boom" in line["error"]
