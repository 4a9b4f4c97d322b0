"""``tunery run/resume --outage-limit`` and ``TUNERY_OUTAGE_LIMIT``: bad values exit 2 naming
them; the outage behaviour itself is tested in tests/controller/test_outage.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tunery.cli import EXIT_INVALID, main


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TUNERY_DB_URL", f"sqlite:///{tmp_path}/t.db")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.yaml").write_text("kind: Experiment\n")

    def invoke(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return invoke


@pytest.mark.parametrize("command", [("run", "exp.yaml"), ("resume", "some-experiment")])
def test_a_negative_outage_limit_names_the_option(cli, command) -> None:
    result = cli(*command, "--outage-limit", "-1")
    assert result.exit_code == EXIT_INVALID
    assert "--outage-limit" in result.output and "-1" in result.output


def test_a_bad_environment_limit_names_the_variable(cli, monkeypatch) -> None:
    monkeypatch.setenv("TUNERY_OUTAGE_LIMIT", "ten minutes")
    result = cli("resume", "some-experiment")
    assert result.exit_code == EXIT_INVALID
    assert "TUNERY_OUTAGE_LIMIT: 'ten minutes' is not a number of seconds" in result.output


def test_help_documents_the_limit(cli) -> None:
    text = cli("run", "--help").output
    assert "--outage-limit SECONDS" in text and "TUNERY_OUTAGE_LIMIT" in text
