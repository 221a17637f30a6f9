"""Every command has help text and appears in the README."""

from __future__ import annotations

from pathlib import Path

import click

from mailer.cli import load_all_commands, main

load_all_commands()

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, cmd in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        found.append((path, cmd))
        if isinstance(cmd, click.Group):
            found.extend(commands(cmd, path + " "))
    return found


def test_there_are_commands() -> None:
    names = [name for name, _ in commands(main)]
    for expected in ("init", "send", "campaigns resume", "contacts import", "serve",
                     "bounces process", "worker", "release preview", "suppressions import"):
        assert expected in names


def test_every_command_has_help_text() -> None:
    for name, cmd in commands(main):
        assert cmd.help and cmd.help.strip(), f"`mailer {name}` has no help text"
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"`mailer {name} {param.opts[0]}` has no help text"


def test_every_command_is_in_the_readme() -> None:
    missing = []
    for name, cmd in commands(main):
        if isinstance(cmd, click.Group):
            continue
        if f"mailer {name}" not in README:
            missing.append(name)
    assert not missing, f"not in README.md: {missing}"


def test_readme_opens_with_the_two_commands() -> None:
    head = README[:2500]
    assert "pip install . && .venv/bin/mailer demo" in head
    assert "pip install -e '.[test]' && .venv/bin/pytest" in head


def test_commands_load_lazily() -> None:
    """`mailer send` must not pay for Flask, the bounce parsers or openpyxl."""
    import subprocess
    import sys

    code = ("import sys; from mailer.cli import main; main.get_command(None, 'send'); "
            "print(' '.join(m for m in ('flask', 'flufl.bounce', 'openpyxl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
