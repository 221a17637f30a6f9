"""Settings: file, environment, errors that name the file, the key and the value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailer.cli import main
from mailer.config import config_template, load_settings
from mailer.errors import ConfigError
from mailer.masking import mask_url


def test_defaults_live_beside_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "mailer.toml").write_text('secret_key = "k"\n')
    s = load_settings(tmp_path / "mailer.toml", env={})
    assert s.database_url == f"sqlite:///{tmp_path / 'mailer.db'}"
    assert s.outbox_dir == tmp_path / "outbox"
    assert s.transport == "outbox"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    (tmp_path / "mailer.toml").write_text('secret_key = "k"\nconcurrency = 2\n')
    s = load_settings(
        tmp_path / "mailer.toml",
        env={
            "MAILER_CONCURRENCY": "8",
            "MAILER_VERP": "true",
            "MAILER_ABOUT": '{"en": "About us"}',
        },
    )
    assert s.concurrency == 8
    assert s.verp is True
    assert s.about == {"en": "About us"}


def test_a_bad_value_names_file_key_and_value(tmp_path: Path) -> None:
    path = tmp_path / "mailer.toml"
    path.write_text('concurrency = "lots"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert str(path) in str(err.value)
    assert "concurrency" in str(err.value) and "'lots'" in str(err.value)


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / "mailer.toml").write_text("")
    with pytest.raises(ConfigError, match=r"MAILER_RATE_PER_HOUR.*'soon'"):
        load_settings(tmp_path / "mailer.toml", env={"MAILER_RATE_PER_HOUR": "soon"})


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "mailer.toml").write_text('smtp_ulr = "smtp://x"\n')
    with pytest.raises(ConfigError, match="unknown setting 'smtp_ulr'"):
        load_settings(tmp_path / "mailer.toml", env={})


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "mailer.toml"
    path.write_text('secret_key = "k"\n\nfrom_name = "unclosed\n')
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(path), "lists", "ls"])
    assert result.exit_code == 1
    assert str(path) in result.output
    assert "line 3" in result.output
    assert "Traceback" not in result.output


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(tmp_path / "nope.toml", env={})


def test_template_lists_every_setting_and_parses(tmp_path: Path) -> None:
    text = config_template("abc")
    path = tmp_path / "mailer.toml"
    path.write_text(text)
    s = load_settings(path, env={})
    assert s.secret_key == "abc"
    for name in ("smtp_url", "postal_address", "rate_per_second", "database_url"):
        assert f"# {name} = " in text
    # Uncommenting any default must give a valid file.
    uncommented = "\n".join(
        line[2:] if re.match(r"# [a-z_]+ = ", line) else line for line in text.splitlines()
    )
    path.write_text(uncommented)
    load_settings(path, env={})


def test_secrets_are_masked(tmp_path: Path) -> None:
    path = tmp_path / "mailer.toml"
    path.write_text(
        'secret_key = "s3cr3t-value"\ntransport = "smtp"\n'
        'smtp_url = "smtp://user:hunter2@mail.example.org:587"\n'
    )
    result = CliRunner().invoke(main, ["--config", str(path), "config", "show"])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output and "s3cr3t-value" not in result.output
    assert "smtp://user:****@mail.example.org:587" in result.output
    assert mask_url("smtp://mail.example.org") == "smtp://mail.example.org"
