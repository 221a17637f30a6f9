"""Outside review of inputs and secrets, on cases the issue 12 tests did not cover.

- Files that hold addresses (a contacts export, an import's errors file, a campaign report) are
  written readable by their owner only under the usual umask 022, like mailer.toml and the
  database.
- A database URL that SQLAlchemy cannot use (postgres://, an unknown driver, a port that is
  not a number) is a clear error with the password masked, never a traceback.
- A password with a raw '@': the driver's error names "the host" it parsed, which is the end of
  the password; that part is hidden too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from mailer.cli import main
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from tests.support.cli import Cli
from tests.support.config import write_config
from tests.support.files import mode
from tests.support.sending import campaign_with

SECRET = "S3cr€t#?@LEAKPART"


def test_files_with_addresses_are_owner_only(
    session: Session, cli: Cli, tmp_path: Path, umask_022: None
) -> None:
    create_list(session, "news", "News")
    add_contact(session, "kim@example.org", "news")
    session.commit()
    cli("contacts", "export", "-o", str(tmp_path / "out.csv"))
    assert mode(tmp_path / "out.csv") == 0o600
    # Overwriting an export someone had left world-readable makes it private too.
    (tmp_path / "old.csv").write_text("x")
    os.chmod(tmp_path / "old.csv", 0o644)
    cli("contacts", "export", "-o", str(tmp_path / "old.csv"))
    assert mode(tmp_path / "old.csv") == 0o600
    source = tmp_path / "in.csv"
    source.write_text("email,name\nnot-an-address,X\nlee@example.org,Lee\n", encoding="utf-8")
    cli(
        "contacts",
        "import",
        str(source),
        "--list",
        "news",
        "--errors",
        str(tmp_path / "errors.csv"),
    )
    assert mode(tmp_path / "errors.csv") == 0o600
    assert "not-an-address" in (tmp_path / "errors.csv").read_text(encoding="utf-8-sig")
    (tmp_path / "report.csv").write_text("x")
    os.chmod(tmp_path / "report.csv", 0o666)
    campaign_with(session, [("park@example.org", "250 ok")])
    session.commit()
    cli("campaigns", "report", "1", "--csv", str(tmp_path / "report.csv"))
    assert mode(tmp_path / "report.csv") == 0o600
    assert "park@example.org" in (tmp_path / "report.csv").read_text(encoding="utf-8-sig")


@pytest.mark.parametrize(
    "url",
    [
        f"postgres://kim:{SECRET}@db.example.org/mailer",
        f"postgresql+nosuchdriver://kim:{SECRET}@db.example.org/mailer",
        f"postgresql+psycopg://kim:{SECRET}@db.example.org:notaport/mailer",
        f"postgresql+psycopg://:{SECRET}@db.example.org:99999999/mailer",
        # The driver's parser ends the password at the first '@' and names the rest as the host.
        f"postgresql+psycopg://kim:{SECRET}@127.0.0.1:9/mailer",
        "postgresql+psycopg://kim:abc@LEAKPART@db.invalid/mailer",
    ],
)
def test_unusable_database_url_is_a_clear_error(tmp_path: Path, url: str) -> None:
    config = write_config(tmp_path, {"database_url": url})
    for args in (["contacts", "ls"], ["contacts", "ls", "--json"], ["config", "show"]):
        result = CliRunner().invoke(main, ["--config", str(config), *args])
        out = result.output + (str(result.exception) if result.exception else "")
        assert "S3cr" not in out and "LEAKPART" not in out, (args, out)
        assert "Traceback" not in out, (args, out)
        if args[0] == "contacts":
            assert result.exit_code == 1 and "database" in out, (args, out)
            assert not isinstance(result.exception, Exception) or isinstance(
                result.exception, SystemExit
            ), repr(result.exception)
