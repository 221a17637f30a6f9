"""A new user's first week with mailer.toml (issue 21): placeholder settings never reach a real
transport, a command run outside a project refuses instead of starting a new database, and the
TOML mistakes people make by hand are explained with the file, the line, the key and the fix."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select as sql_select

from mailer.cli import main
from mailer.config import (
    SETTINGS,
    Settings,
    config_template,
    find_config,
    load_settings,
    placeholder_settings,
)
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.delivery.send import checked_transport
from mailer.errors import ConfigError
from mailer.releases.checks import check_release
from mailer.releases.source import load_release
from mailer.store.db import session_scope
from mailer.store.models import Campaign
from tests.support.cli import Cli
from tests.support.config import CONFIG_EXTRA, write_config
from tests.support.smtp import SmtpServer

SAMPLES = Path(__file__).parents[1] / "mailer" / "samples"
PLACEHOLDERS = ("base_url", "from_address", "from_name", "organisation_name")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def release(tmp_path: Path) -> Path:
    folder = tmp_path / "releases"
    folder.mkdir()
    for f in SAMPLES.glob("election-night.*.md"):
        shutil.copy(f, folder / f.name)
    return folder / "election-night.en.md"


def new_user_config(folder: Path, database_url: str, **values: str) -> Path:
    """What the press officer had: `mailer init`'s file with only the postal address and the
    SMTP URL set (every example value left as it was)."""
    path = folder / "mailer.toml"
    lines = [
        'secret_key = "k"',
        f'database_url = "{database_url}"',
        'postal_address = "1 Broad Street, Philadelphia, PA 19107, USA"',
    ]
    lines += [f'{k} = "{v}"' for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def populate(settings: Settings) -> None:
    with session_scope(settings) as s:
        create_list(s, "press", "Press")
        add_contact(s, "kim@example.com", "press", name="김민수", language="ko")
        add_contact(s, "jane@example.net", "press", name="Jane", language="en")


# --- placeholders --------------------------------------------------------------------------------


def test_placeholders_are_declared_beside_their_settings() -> None:
    declared = {s.name for s in SETTINGS if s.placeholder}
    assert declared == {*PLACEHOLDERS, "postal_address"}
    # Every example value a new file starts with is declared: none can reach readers unnoticed.
    assert {s.name for s in placeholder_settings(Settings())} == declared
    text = config_template("k")
    for name in declared:
        block = text.split(f"# {name} = ")[0].rsplit("\n\n", 1)[-1]
        assert "SET THIS before sending to real readers" in block, name


def test_a_real_send_refuses_every_placeholder_in_one_message(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path
) -> None:
    config = new_user_config(tmp_path, settings.database_url, transport="smtp", smtp_url=smtp.url())
    populate(settings)
    result = Cli(config)("send", str(release), "--list", "press", "--yes", expect=1)
    out = result.output
    assert out.count("Error:") == 1 and "Traceback" not in out
    for name in PLACEHOLDERS:
        assert f"{name} is still the example" in out, name
    assert "'Example Community Center'" in out and "'press@example.org'" in out
    # How to set each: the lines to write, and the variables that override them.
    assert '    from_address = "press@your-organisation.org"' in out
    assert "MAILER_FROM_NAME" in out and str(config) in out
    assert smtp.sink.received == []
    with session_scope(settings) as s:
        assert s.scalars(sql_select(Campaign)).all() == []


def test_release_check_is_an_error_for_smtp_and_a_warning_for_the_outbox(
    tmp_path: Path, release: Path
) -> None:
    loaded = load_release(release)
    smtp_settings = Settings(
        transport="smtp", smtp_url="smtp://127.0.0.1:1", postal_address="1 Broad St", secret_key="k"
    )

    def placeholder_findings(s: Settings, test_send: bool = False) -> list[tuple[str, str]]:
        return [
            (f.level, f.message)
            for f in check_release(loaded, s, test_send=test_send)
            if "still the example" in f.message or "is empty" in f.message
        ]

    [(level, message)] = placeholder_findings(smtp_settings)
    assert level == "error"
    assert all(name in message for name in PLACEHOLDERS)
    [(level, _)] = placeholder_findings(smtp_settings, test_send=True)
    assert level == "warning"
    outbox = Settings(postal_address="1 Broad St", secret_key="k")
    [(level, _)] = placeholder_findings(outbox)
    assert level == "warning"
    # An empty postal address stays an error everywhere, in the same single message.
    [(level, message)] = placeholder_findings(Settings(secret_key="k"))
    assert level == "error" and "postal_address is empty" in message
    assert "from_name is still the example" in message
    real: dict[str, Any] = {k: v for k, v in CONFIG_EXTRA.items() if k != "secret_key"}
    assert placeholder_findings(Settings(transport="smtp", smtp_url="smtp://h", **real)) == []


def test_release_check_command_refuses_placeholders_for_smtp(
    settings: Settings, tmp_path: Path, release: Path
) -> None:
    config = new_user_config(
        tmp_path, settings.database_url, transport="smtp", smtp_url="smtp://127.0.0.1:1"
    )
    out = Cli(config)("release", "check", str(release), expect=1).output
    assert "error: " in out and "from_address is still the example" in out


def test_a_test_send_warns_and_goes_out(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path
) -> None:
    config = new_user_config(tmp_path, settings.database_url, transport="smtp", smtp_url=smtp.url())
    out = Cli(config)("send", str(release), "--test", "me@example.com").output
    assert len(smtp.sink.received) == 2  # one per language, to the tester only
    assert "warning: " in out and "from_address is still the example" in out


def test_resume_and_worker_refuse_placeholders_before_connecting(
    settings: Settings, tmp_path: Path, smtp: SmtpServer
) -> None:
    config = new_user_config(tmp_path, settings.database_url, transport="smtp", smtp_url=smtp.url())
    with pytest.raises(ConfigError, match="from_address is still the example"):
        checked_transport(load_settings(config, env={}))
    worker = Cli(config)("worker", "--once", expect=1).output
    assert "organisation_name is still the example" in worker
    checked_transport(load_settings(config, env={}), test_send=True)
    outbox = new_user_config(tmp_path, settings.database_url)
    checked_transport(load_settings(outbox, env={}))


def test_the_plan_shows_from_reply_to_subjects_and_transport(
    settings: Settings, cli: Cli, release: Path
) -> None:
    populate(settings)
    out = cli("send", str(release), "--list", "press", "--dry-run").output
    assert re.search(r"From: +Hanul Community Center <press@hanul\.example\.org>", out)
    assert re.search(r"Reply-To: +\(none: replies go to From\)", out)
    assert re.search(r"Subject \[en\]: +\S", out) and re.search(r"Subject \[ko\]: +\S", out)
    assert re.search(r"transport: +dry run", out)


def test_the_prompt_names_the_sender_and_the_transport(
    settings: Settings, tmp_path: Path, release: Path
) -> None:
    """On a real terminal (a pseudo-terminal here), the question itself says who sends how."""
    write_config(
        tmp_path, {"database_url": settings.database_url, "reply_to": "desk@hanul.example.org"}
    )
    populate(settings)
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("MAILER_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailer", "send", str(release), "--list", "press"],
        cwd=tmp_path,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while b"[y/N]" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        os.write(master, b"n\n")
        proc.wait(timeout=60)
        while True:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    text = seen.decode("utf-8", "replace").replace("\r", "")
    assert "Reply-To:   desk@hanul.example.org" in text or re.search(
        r"Reply-To: +desk@hanul\.example\.org", text
    ), text
    assert re.search(
        r"Send to 2 recipient\(s\) now, from Hanul Community Center "
        r"<press@hanul\.example\.org> via outbox\S* .*\? \[y/N\]",
        text,
    ), text
    assert "Not sent; nothing stored." in text
    assert proc.returncode == 0


# --- finding mailer.toml -------------------------------------------------------------------------


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder without mailer.toml (nor any above it in tmp), as the working directory."""
    folder = tmp_path / "Downloads"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("MAILER_CONFIG", raising=False)
    return folder


@pytest.mark.parametrize(
    "args",
    [
        ["lists", "ls"],
        ["lists", "create", "press", "--name", "P"],
        ["contacts", "ls"],
        ["config", "show"],
        ["db", "upgrade"],
    ],
)
def test_a_command_outside_a_project_refuses_and_writes_nothing(
    elsewhere: Path, args: list[str]
) -> None:
    if find_config(env={}).exists():
        pytest.skip("a mailer.toml exists above the test folder")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "no mailer.toml here or in any folder above" in result.output
    assert f"looked in {elsewhere}, {elsewhere.parent}" in result.output
    assert "mailer init" in result.output and "--config" in result.output
    assert "Traceback" not in result.output
    assert list(elsewhere.iterdir()) == []


def test_init_help_version_and_classify_need_no_project(elsewhere: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["--help"]).exit_code == 0
    assert runner.invoke(main, ["--version"]).exit_code == 0
    assert runner.invoke(main, ["lists", "--help"]).exit_code == 0
    mail = elsewhere / "bounce.eml"
    mail.write_text("From: x@example.org\nSubject: hi\n\nhello\n")
    assert runner.invoke(main, ["bounces", "classify", str(mail)]).exit_code == 0
    mail.unlink()
    result = runner.invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    assert (elsewhere / "mailer.toml").exists()


def test_a_subfolder_uses_the_project_above_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILER_CONFIG", raising=False)
    project = tmp_path / "press-office"
    runner = CliRunner()
    assert runner.invoke(main, ["init", "--dir", str(project)]).exit_code == 0
    deep = project / "releases" / "2026"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_config(env={}) == project / "mailer.toml"
    created = runner.invoke(main, ["lists", "create", "press", "--name", "Press"])
    assert created.exit_code == 0, created.output
    assert sorted(p.name for p in deep.iterdir()) == []
    monkeypatch.chdir(project)
    listed = runner.invoke(main, ["lists", "ls"])
    assert "press" in listed.output


def test_config_option_and_variable_override_the_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    other = tmp_path / "other"
    for folder in (here, other):
        folder.mkdir()
        write_config(
            folder,
            {"database_url": f"sqlite:///{folder / 'm.db'}", "organisation_name": folder.name},
        )
    monkeypatch.chdir(here)
    monkeypatch.delenv("MAILER_CONFIG", raising=False)
    assert load_settings().organisation_name == "here"
    assert load_settings(other / "mailer.toml").organisation_name == "other"
    monkeypatch.setenv("MAILER_CONFIG", str(other / "mailer.toml"))
    assert load_settings().organisation_name == "other"
    result = CliRunner().invoke(main, ["config", "show"])
    assert "organisation_name" in result.output and "other" in result.output


# --- mailer.toml traps ----------------------------------------------------------------------------


def config_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mailer.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    message = str(err.value)
    assert message.startswith(f"{path} line "), message
    # The command shows the same sentence, without a traceback.
    result = CliRunner().invoke(main, ["--config", str(path), "config", "show"])
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output
    return message


def test_a_setting_after_a_table_is_named_with_both_lines(tmp_path: Path) -> None:
    message = config_error(
        tmp_path,
        'secret_key = "k"\npostal_address = "1 Main St"\n\n'
        '[about]\nen = "We organise."\nko = "우리는"\n\n'
        'default_language = "ko"\nwebsite = "https://x.org"\n',
    )
    assert "line 8: `default_language` is inside the [about] table started on line 4" in message
    assert "(so are `website` after it)" in message
    assert "move it above [about]" in message
    assert 'about = {en = "...", ko = "..."}' in message


def test_a_multi_line_inline_table_is_explained(tmp_path: Path) -> None:
    message = config_error(
        tmp_path, 'secret_key = "k"\nabout = {\n  en = "We organise.",\n  ko = "우리는"\n}\n'
    )
    assert "line 2: the inline table `about = {` goes on over several lines" in message
    assert "on one line" in message and "[about] table at the end" in message


@pytest.mark.parametrize(
    ("line", "fix"),
    [
        (
            "from_name = Hanul Community Center",
            'put it in quotes: from_name = "Hanul Community Center"',
        ),
        ("from_address = press@hanul.org", 'from_address = "press@hanul.org"'),
        ("from_name = \u201cHanul\u201d", 'from_name = "Hanul"'),
        ("verp = True", "verp = true or verp = false"),
        ("concurrency = four", "a number without quotes"),
    ],
)
def test_an_unquoted_value_says_how_to_write_it(tmp_path: Path, line: str, fix: str) -> None:
    message = config_error(tmp_path, f'secret_key = "k"\n{line}\n')
    key = line.split(" ")[0]
    assert f"line 2: the value of `{key}` is not valid TOML" in message
    assert fix in message


def test_text_over_two_lines_suggests_triple_quotes(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'secret_key = "k"\npostal_address = "1 Main St\nPA"\n')
    assert "line 2: the text of `postal_address` has no closing quote" in message
    assert 'postal_address = """..."""' in message


def test_a_key_set_twice_names_both_lines(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'secret_key = "k"\nfrom_name = "A"\n\nfrom_name = "B"\n')
    assert "line 4: `from_name` is set twice (first on line 2)" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'secret_key = "k"\nsmtp_ulr = "smtp://x"\n',
            "line 2: unknown setting 'smtp_ulr'; did you mean `smtp_url`?",
        ),
        (
            'secret_key = "k"\ndefault_langauge = "ko"\n',
            "line 2: unknown setting 'default_langauge'; did you mean `default_language`?",
        ),
        (
            'secret_key = "k"\n\n[abuot]\nen = "x"\n',
            "line 3: unknown setting 'abuot'; did you mean `about`?",
        ),
        (
            'secret_key = "k"\nfavourite_colour = "blue"\n',
            "line 2: unknown setting 'favourite_colour'; the mailer.toml that `mailer init` writes",
        ),
    ],
)
def test_a_misspelt_key_gets_did_you_mean(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in config_error(tmp_path, text)


def test_a_bad_value_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "mailer.toml"
    path.write_text('secret_key = "k"\n\nconcurrency = "lots"\n')
    with pytest.raises(
        ConfigError,
        match=r"concurrency: expected a whole number, got 'lots' "
        r"\(line 3\)",
    ):
        load_settings(path, env={})


def test_multi_line_strings_and_arrays_do_not_confuse_the_scanner(tmp_path: Path) -> None:
    path = tmp_path / "mailer.toml"
    path.write_text(
        'secret_key = "k"\npostal_address = """\n1 Main St\n[not a table]\n'
        'from_name = not a key\n"""\nlanguages = [\n  "en",\n  "ko",\n]\n\n'
        '[social]\nFacebook = "https://facebook.com/x"\n',
        encoding="utf-8",
    )
    s = load_settings(path, env={})
    assert s.postal_address.startswith("1 Main St") and s.languages == ["en", "ko"]
    assert s.social == {"Facebook": "https://facebook.com/x"}
