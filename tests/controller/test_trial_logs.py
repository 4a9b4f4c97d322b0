"""A failed trial's message quotes the end of its log (controller.trial_logs)."""

from __future__ import annotations

from pathlib import Path

from controller.trial_logs import FAILURE_TAIL_LINES, failure_message, log_tail


def test_failure_message_quotes_the_last_lines_and_the_path(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    log.write_text("".join(f"line {i}\n" for i in range(20)) + "boom: no such file\n\n")
    message = failure_message("exit code 2", str(log))
    first, header, *quoted = message.splitlines()
    assert first == "Trial has failed. Job message: exit code 2: boom: no such file"
    assert header == f"last lines of {log}:"
    assert quoted == [f"  line {i}" for i in range(16, 20)] + ["  boom: no such file"]
    assert len(quoted) == FAILURE_TAIL_LINES


def test_failure_message_without_a_log_keeps_katibs_text(tmp_path: Path) -> None:
    assert failure_message("exit code 1", None) == "Trial has failed. Job message: exit code 1"
    empty = tmp_path / "empty.log"
    empty.write_text("")
    assert failure_message("exit code 1", str(empty)) == (
        f"Trial has failed. Job message: exit code 1 (log: {empty})"
    )
    assert log_tail(tmp_path / "missing.log", 5) == ""
