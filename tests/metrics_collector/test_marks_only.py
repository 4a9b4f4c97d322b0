"""The sidecar's ``--marks-only`` mode: the trial's processes are not visible (a Tekton task's
pod shares no process namespace), so only the wrapper's marks end the collection."""

from __future__ import annotations

from pathlib import Path

from metrics_collector.sidecar import MainProcess, parse_args


def test_a_pid_from_another_namespace_is_not_taken_for_a_finished_trial(tmp_path: Path) -> None:
    (tmp_path / "main.pid").write_text("999999\n")  # no such process here: another namespace
    main = MainProcess(None, tmp_path / "main.pid", tmp_path, marks_only=True)
    assert not main.is_done()
    seen_by_pid = MainProcess(None, tmp_path / "main.pid", tmp_path)
    assert seen_by_pid.is_done()  # what the default mode would wrongly conclude here
    (tmp_path / "999999.pid").write_text("completed\n")  # the wrapper's end mark
    assert main.is_done()


def test_marks_only_never_signals(tmp_path: Path, monkeypatch) -> None:
    from metrics_collector import sidecar

    signalled: list[object] = []
    monkeypatch.setattr(sidecar, "_signal_all", lambda pids, sig: signalled.append(pids))
    monkeypatch.setattr(sidecar, "descendants_of", lambda pid: [pid])
    (tmp_path / "main.pid").write_text("999999\n")
    main = MainProcess(None, tmp_path / "main.pid", tmp_path, marks_only=True)
    main.stop(grace=0.1)
    assert signalled == []
    assert (tmp_path / "early-stopped").read_text().strip() == "early-stopped"
    MainProcess(None, tmp_path / "main.pid", tmp_path).stop(grace=0.1)
    assert signalled  # the default mode would signal (the check can fail)


def test_the_flag_reaches_the_config() -> None:
    config, _ = parse_args(["-t", "t", "-m", "loss", "-path", "/x", "--marks-only"])
    assert config.marks_only and not config.follow_container
