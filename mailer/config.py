"""Settings: one typed object from mailer.toml, overridden by MAILER_* environment variables.

Each setting is declared once, in SETTINGS, beside its default and its help text. `mailer init`
writes a mailer.toml that lists every one of them, commented, with its default.

Longer than 400 lines because of that table and the Settings fields that mirror it; reading the
file itself (with errors that name the line and the fix) is in mailer.config_toml.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailer.config_toml import read_toml
from mailer.errors import ConfigError

# Masking lives in mailer.masking; imported here too, where the rest of the code finds it.
from mailer.masking import mask_secret, mask_url
from mailer.releases.languages import from_name, normalise

CONFIG_NAME = "mailer.toml"
ENV_PREFIX = "MAILER_"


@dataclass(frozen=True)
class Setting:
    """The declaration of one setting."""

    name: str
    kind: str  # str, int, float, bool, path, url, dict, list
    default: Any
    help: str
    secret: bool = False
    # Non-empty when the default is only a placeholder (an example value, or empty where a value
    # is required): mail to real readers is refused while the setting still holds it. The text
    # is an example of a real value, shown in that refusal.
    placeholder: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database_url",
        "url",
        "sqlite:///mailer.db",
        "SQLAlchemy URL; relative SQLite paths are beside mailer.toml. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
        secret=True,
    ),
    Setting(
        "transport",
        "str",
        "outbox",
        "Where messages go: 'outbox' (a maildir, nothing leaves the machine) or 'smtp'",
    ),
    Setting("outbox_dir", "path", "outbox", "Maildir folder for the outbox transport"),
    Setting(
        "smtp_url",
        "url",
        "",
        "smtp://user:pass@host:587?tls=starttls or smtps://user:pass@host:465",
        secret=True,
    ),
    Setting("smtp_ca_file", "path", "", "CA bundle to verify the SMTP server (private CA)"),
    Setting("smtp_timeout", "float", 30.0, "Seconds to wait for the SMTP server"),
    Setting(
        "dns_resolver",
        "str",
        "",
        "DNS server `mailer doctor` and the checks before a send ask, as HOST or HOST:PORT "
        "(e.g. 127.0.0.1:5353; empty: this machine's resolver)",
    ),
    Setting("concurrency", "int", 4, "SMTP connections used in parallel"),
    Setting("rate_per_second", "float", 0.0, "Most messages a second for a campaign (0: no limit)"),
    Setting("rate_per_hour", "int", 0, "Most messages an hour (provider quota; 0: no limit)"),
    Setting("batch_size", "int", 100, "Delivery rows claimed at once by each connection"),
    Setting(
        "ledger_group_size",
        "int",
        1,
        "Messages each connection proves to the ledger in one commit before sending them "
        "(1: a commit immediately before every message). Larger is faster, above all on "
        "PostgreSQL; a crash or stall leaves at most this many messages per connection in "
        "doubt, never a second copy. Opt-outs still stop a message within a second",
    ),
    Setting(
        "lease_seconds",
        "int",
        600,
        "A claimed row whose sender is silent this long becomes in_doubt",
    ),
    Setting(
        "give_up_after",
        "int",
        259200,
        "Seconds after which a deferred message is failed (default 3 days)",
    ),
    Setting("retry_base_seconds", "int", 300, "First retry delay after a 4xx; doubles each time"),
    Setting(
        "envelope_sender", "str", "", "Envelope sender (bounce address); default: from_address"
    ),
    Setting(
        "verp",
        "bool",
        False,
        "Encode the recipient in the envelope sender (bounces+user=domain@...)",
    ),
    Setting("secret_key", "str", "", "Signs unsubscribe/confirm/preferences tokens", secret=True),
    Setting(
        "base_url",
        "str",
        "http://127.0.0.1:8000",
        "Public https address of `mailer serve`, used in links and List-Unsubscribe",
        placeholder="https://news.your-organisation.org",
    ),
    Setting(
        "from_address",
        "str",
        "press@example.org",
        "From address of every message",
        placeholder="press@your-organisation.org",
    ),
    Setting(
        "from_name",
        "text",
        "Example Community Center",
        "Display name in From (one text, or one per language: {en = '...', ko = '...'})",
        placeholder="Your Organisation",
    ),
    Setting("reply_to", "str", "", "Reply-To address (empty: none)"),
    Setting(
        "unsubscribe_mailto",
        "str",
        "",
        "Address for mailed unsubscribes in List-Unsubscribe (default: from_address)",
    ),
    Setting(
        "organisation_name",
        "text",
        "Example Community Center",
        "Organisation name shown in headers and footers (one text, or one per language: "
        "{en = '...', ko = '...'})",
        placeholder="Your Organisation",
    ),
    Setting(
        "postal_address",
        "text",
        "",
        "Organisation's postal address for the footer (required for bulk mail by law)",
        placeholder="100 Main Street, Springfield, PA 19000, USA",
    ),
    Setting("website", "str", "", "Organisation website, linked in the footer"),
    Setting("social", "dict", {}, "Social links for the footer, e.g. {Facebook = 'https://...'}"),
    Setting(
        "about",
        "text",
        {},
        "Boilerplate after every release, per language: {en = '...', ko = '...'}",
    ),
    Setting("default_language", "str", "en", "Language of contacts who do not say"),
    Setting(
        "timezone",
        "str",
        "",
        "Time zone the CLI shows times in, e.g. America/New_York (empty: this machine's)",
    ),
    Setting("languages", "list", ["en", "ko"], "Languages the organisation writes in"),
    Setting("dkim_key_file", "path", "", "PEM private key for DKIM signing (empty: no DKIM)"),
    Setting("dkim_selector", "str", "mailer", "DKIM selector"),
    Setting("dkim_domain", "str", "", "DKIM signing domain (default: the From domain)"),
    Setting(
        "feedback_id_sender",
        "str",
        "",
        "Sender id in the Feedback-ID header (Gmail FBL; default: the From domain's first label)",
    ),
    Setting(
        "test_recipient",
        "str",
        "",
        "Development: deliver every message to this address instead of the recipient",
    ),
    Setting("trust_proxy", "bool", False, "Trust X-Forwarded-* headers (behind a reverse proxy)"),
    Setting("confirm_max_age", "int", 604800, "Seconds a confirmation link stays valid (7 days)"),
    Setting(
        "confirm_domain_per_hour",
        "int",
        60,
        "Most confirmation emails an hour to one domain (gmail.com...; 0: no limit)",
    ),
    Setting(
        "confirm_global_per_hour",
        "int",
        300,
        "Most confirmation emails an hour in all (0: no limit)",
    ),
    Setting(
        "web_max_body_bytes",
        "int",
        32768,
        "`mailer serve`: largest request body; a longer Content-Length gets 413 unread",
    ),
    Setting("web_max_header_bytes", "int", 16384, "`mailer serve`: largest request head"),
    Setting(
        "web_channel_timeout", "int", 20, "`mailer serve`: seconds a silent connection is kept open"
    ),
    Setting(
        "web_connection_limit",
        "int",
        1000,
        "`mailer serve`: open connections at once (slow clients hold one each)",
    ),
    Setting("console", "bool", True, "`mailer serve`: serve the staff console at /admin/"),
    Setting(
        "console_listen",
        "str",
        "",
        "`mailer serve`: host:port for the console alone (e.g. 127.0.0.1:8001; empty: with the "
        "subscriber pages)",
    ),
    Setting(
        "console_url",
        "str",
        "",
        "Address staff open the console at, for invitation and reset links (default: base_url, "
        "or http://console_listen)",
    ),
    Setting("console_idle_minutes", "int", 30, "Console: minutes without a request that sign out"),
    Setting("console_session_hours", "int", 12, "Console: hours after sign-in that sign out"),
    Setting(
        "console_max_upload_bytes",
        "int",
        52428800,
        "Console: largest upload (contact files); other requests keep web_max_body_bytes",
    ),
    Setting(
        "require_approval",
        "bool",
        False,
        "Console: a release is sent only once a sender (not its author) approved its version",
    ),
    Setting(
        "confirm_typing_over",
        "int",
        500,
        "Console: audiences larger than this are confirmed by typing the list's name",
    ),
    Setting(
        "serve_worker",
        "bool",
        True,
        "`mailer serve`: send campaigns from a worker thread inside the server (false: "
        "separate `mailer worker` processes do)",
    ),
    Setting("newsroom", "bool", True, "`mailer serve`: serve the public newsroom (newsroom_path)"),
    Setting(
        "newsroom_path",
        "str",
        "/news",
        "Where the public newsroom is served: release pages, indexes, feeds, sitemap",
    ),
    Setting(
        "media_dir",
        "path",
        "media",
        "Folder of the press-kit files releases name (photos, documents), stored by content "
        "and served at /media/",
    ),
    Setting(
        "media_max_bytes",
        "int",
        20971520,
        "Largest press-kit file a release may name, in bytes (20 MB)",
    ),
    Setting(
        "attach_max_bytes",
        "int",
        5242880,
        "Most bytes of real attachments (`attach:`) one message may carry, together (5 MB)",
    ),
    Setting("soft_bounce_threshold", "int", 5, "Soft bounces within the window that suppress"),
    Setting("soft_bounce_window_days", "int", 30, "Window for counting soft bounces"),
    Setting(
        "bounce_raw_max_bytes",
        "int",
        65536,
        "Most bytes of each bounce report kept as received, for the console (the rest is cut)",
    ),
    # Guards during a send (delivery/guards.py, docs/sending.md).
    Setting(
        "complaint_pause_rate",
        "float",
        0.003,
        "A sending campaign pauses itself when its spam complaints exceed this share of its "
        "delivered messages (0.003: Gmail's 0.3% line; 0: never)",
    ),
    Setting(
        "complaint_pause_min_delivered",
        "int",
        1000,
        "Delivered messages a campaign needs before its complaint rate can pause it",
    ),
    Setting(
        "provider_refusal_streak",
        "int",
        3,
        "Recipients of one mail provider refusing the sender in a row (5.7.26, blocked, 421 "
        "rate limits) before its other recipients are deferred with backoff (0: never)",
    ),
    Setting(
        "provider_backoff_seconds",
        "int",
        900,
        "How long a refusing provider's recipients wait; doubles each time it refuses again",
    ),
    Setting(
        "provider_backoff_max_seconds",
        "int",
        21600,
        "The longest wait for a refusing provider (default 6 hours)",
    ),
    Setting(
        "provider_group_by_mx",
        "bool",
        True,
        "Group recipients by their domain's MX host (one lookup per domain, with dnspython "
        "when installed); false: by domain",
    ),
    Setting(
        "track_opens",
        "bool",
        False,
        "Engagement: count opens with a 1x1 image in lists that track clicks (unreliable: "
        "includes machine opens; never used for decisions)",
    ),
    Setting(
        "engagement_retention_days",
        "int",
        180,
        "Engagement: days a click or open that names a person is kept (0: kept until erased)",
    ),
    Setting(
        "click_machine_seconds",
        "int",
        10,
        "Engagement: a click this many seconds or less after its message was sent is a "
        "machine's (a scanner following links on arrival; 0: no such rule)",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}

# Settings that may hold line breaks: they only reach message bodies. Every other text setting
# must be one line without control characters, because several end up in headers (from_name,
# reply_to, a CR LF there would add a Bcc: line) or inside <...> in List-Unsubscribe.
MULTI_LINE = frozenset({"postal_address", "about"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# An address as it may stand in a header or a mailto: URL: no spaces, quotes, brackets or the
# characters that separate addresses or start a query.
_HEADER_ADDRESS = re.compile(r'^[^\s<>,;:"()\[\]\\?&@]+@[^\s<>,;:"()\[\]\\?&@]+$')
ADDRESS_SETTINGS = ("from_address", "reply_to", "unsubscribe_mailto", "envelope_sender")
# The first part of the paths the subscriber pages and the console use: the newsroom may not
# take one of them.
_TAKEN_PATHS = frozenset(
    {"admin", "static", "media", "subscribe", "embed", "confirm", "u", "preferences", "healthz"}
    | {"l", "o"}  # engagement: /l/ link redirects, /o/ opens
)


@dataclass(frozen=True)
class Settings:
    """The effective settings. Build with load_settings(); tests may construct it directly."""

    base_dir: Path = field(default_factory=Path.cwd)
    source: str = "defaults"
    database_url: str = "sqlite:///mailer.db"
    transport: str = "outbox"
    outbox_dir: Path = Path("outbox")
    smtp_url: str = ""
    smtp_ca_file: Path | None = None
    smtp_timeout: float = 30.0
    dns_resolver: str = ""
    concurrency: int = 4
    rate_per_second: float = 0.0
    rate_per_hour: int = 0
    batch_size: int = 100
    ledger_group_size: int = 1
    lease_seconds: int = 600
    give_up_after: int = 259200
    retry_base_seconds: int = 300
    envelope_sender: str = ""
    verp: bool = False
    secret_key: str = ""
    base_url: str = "http://127.0.0.1:8000"
    from_address: str = "press@example.org"
    from_name: str = "Example Community Center"
    reply_to: str = ""
    unsubscribe_mailto: str = ""
    organisation_name: str = "Example Community Center"
    postal_address: str = ""
    website: str = ""
    social: dict[str, str] = field(default_factory=dict)
    about: dict[str, str] = field(default_factory=dict)  # {language: Markdown}
    default_language: str = "en"
    timezone: str = ""
    languages: list[str] = field(default_factory=lambda: ["en", "ko"])
    dkim_key_file: Path | None = None
    dkim_selector: str = "mailer"
    dkim_domain: str = ""
    feedback_id_sender: str = ""
    test_recipient: str = ""
    trust_proxy: bool = False
    confirm_max_age: int = 604800
    confirm_domain_per_hour: int = 60
    confirm_global_per_hour: int = 300
    web_max_body_bytes: int = 32768
    web_max_header_bytes: int = 16384
    web_channel_timeout: int = 20
    web_connection_limit: int = 1000
    console: bool = True
    console_listen: str = ""
    console_url: str = ""
    console_idle_minutes: int = 30
    console_session_hours: int = 12
    console_max_upload_bytes: int = 52428800
    require_approval: bool = False
    confirm_typing_over: int = 500
    serve_worker: bool = True
    newsroom: bool = True
    newsroom_path: str = "/news"
    media_dir: Path = Path("media")
    media_max_bytes: int = 20971520
    attach_max_bytes: int = 5242880
    soft_bounce_threshold: int = 5
    soft_bounce_window_days: int = 30
    bounce_raw_max_bytes: int = 65536
    complaint_pause_rate: float = 0.003
    complaint_pause_min_delivered: int = 1000
    provider_refusal_streak: int = 3
    provider_backoff_seconds: int = 900
    provider_backoff_max_seconds: int = 21600
    provider_group_by_mx: bool = True
    track_opens: bool = False
    engagement_retention_days: int = 180
    click_machine_seconds: int = 10

    @property
    def templates_dir(self) -> Path:
        """User overrides of the shipped templates: templates/ beside mailer.toml."""
        return self.base_dir / "templates"

    @property
    def bounce_address(self) -> str:
        return self.envelope_sender or self.from_address

    @property
    def unsubscribe_address(self) -> str:
        return self.unsubscribe_mailto or self.from_address

    def public(self) -> dict[str, Any]:
        """Every setting with secrets masked: what `config show` prints."""
        out: dict[str, Any] = {}
        for s in SETTINGS:
            value = getattr(self, s.name)
            if isinstance(value, Path):
                value = str(value)
            elif value is None:
                value = ""
            elif s.kind == "text" and isinstance(getattr(value, "values", None), dict):
                value = dict(value.values)  # a text per language: show them all
            if s.secret and value:
                value = mask_secret(s.name, str(value))
            out[s.name] = value
        return out


def find_config(
    explicit: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    start: Path | None = None,
) -> Path:
    """The config file path: --config, then MAILER_CONFIG, then the mailer.toml of the current
    folder or of the nearest folder above it (as git finds its repository, so a command run in
    a project's subfolder uses the project). Without one: ./mailer.toml, which does not exist."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get("MAILER_CONFIG"):
        return Path(env["MAILER_CONFIG"])
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        try:
            if (folder / CONFIG_NAME).is_file():
                return folder / CONFIG_NAME
        except OSError:
            continue  # a folder we may not look into: go on upward
    return here / CONFIG_NAME


def no_config_message(start: Path | None = None) -> str:
    """Why a command will not run without mailer.toml, naming every folder looked in."""
    here = (start or Path.cwd()).absolute()
    looked = ", ".join(str(f) for f in (here, *here.parents))
    return (
        f"no {CONFIG_NAME} here or in any folder above (looked in {looked}). Run the "
        f"command in your project's folder (where `mailer init` wrote {CONFIG_NAME}), pass "
        f"--config PATH or set MAILER_CONFIG; to start a new project here: mailer init"
    )


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    must_exist: bool = False,
) -> Settings:
    """Read mailer.toml (if present) and MAILER_* variables into a Settings object.

    `must_exist`: refuse when no mailer.toml is found, instead of using the defaults in the
    current folder (the CLI: a command run in the wrong folder must not start a new database)."""
    env = os.environ if env is None else env
    config_path = find_config(path, env).absolute()
    raw: dict[str, Any] = {}
    lines: dict[str, int] = {}
    explicit = bool(path) or bool(env.get("MAILER_CONFIG"))
    if config_path.exists():
        raw, lines = read_toml(config_path, {s.name: s.kind for s in SETTINGS})
    elif explicit:
        raise ConfigError(f"{config_path}: no such config file (run `mailer init` to create one)")
    elif must_exist:
        raise ConfigError(no_config_message())
    base_dir = config_path.parent
    values: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            values[key] = _coerce(_BY_NAME[key], value, f"{config_path}: {key}")
        except ConfigError as err:
            if key not in lines:
                raise
            raise ConfigError(f"{err} (line {lines[key]})") from None
    for name, setting in _BY_NAME.items():
        var = ENV_PREFIX + name.upper()
        if var in env:
            values[name] = _coerce(setting, env[var], f"environment variable {var}", from_env=True)
    settings = _build(base_dir, str(config_path) if config_path.exists() else "defaults", values)
    _validate(settings, config_path, _origin(config_path, lines, env))
    return settings


def _origin(
    config_path: Path, lines: Mapping[str, int], env: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """Where each setting came from, as (prefix, suffix) of an error about its value: the
    variable that set it, or the file and its line, so a user can find what to fix."""
    out: dict[str, tuple[str, str]] = {}
    for name in _BY_NAME:
        var = ENV_PREFIX + name.upper()
        if var in env:
            out[name] = (f"environment variable {var}", "")
        elif name in lines:
            out[name] = (f"{config_path}: {name}", f" (line {lines[name]})")
    return out


def _coerce(setting: Setting, value: Any, where: str, from_env: bool = False) -> Any:
    kind = setting.kind

    def bad(expected: str) -> ConfigError:
        shown = "****" if setting.secret else repr(value)
        return ConfigError(f"{where}: expected {expected}, got {shown}")

    if kind in ("str", "url", "path"):
        if not isinstance(value, str):
            raise bad("a string")
        control = _CONTROL.search(value) if setting.name not in MULTI_LINE else None
        if control is not None:
            raise ConfigError(
                f"{where}: must be one line without control characters; found "
                f"{control.group()!r} at character {control.start() + 1}"
            )
        if setting.name == "default_language":
            return _language(value, where)
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if (
            from_env
            and isinstance(value, str)
            and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off")
        ):
            return value.lower() in ("1", "true", "yes", "on")
        raise bad("true or false")
    if kind == "int":
        if isinstance(value, bool):
            raise bad("a whole number")
        if isinstance(value, int):
            result = value
        elif from_env and isinstance(value, str):
            try:
                result = int(value)
            except ValueError:
                raise bad("a whole number") from None
        else:
            raise bad("a whole number")
        if result < 0:
            raise bad("a number >= 0")
        return result
    if kind == "float":
        if isinstance(value, bool):
            raise bad("a number")
        if isinstance(value, int | float):
            result_f = float(value)
        elif from_env and isinstance(value, str):
            try:
                result_f = float(value)
            except ValueError:
                raise bad("a number") from None
        else:
            raise bad("a number")
        if result_f < 0:
            raise bad("a number >= 0")
        return result_f
    if kind == "text":
        return _coerce_text(setting, value, where, from_env)
    if kind in ("dict", "list"):
        if from_env and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise bad(f"a JSON {'object' if kind == 'dict' else 'array'}") from None
        if kind == "dict":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise bad("a table of strings")
            return dict(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        if setting.name == "languages":
            return list(dict.fromkeys(_language(v, where) for v in value))
        return list(value)
    raise AssertionError(kind)  # pragma: no cover


def _language(value: str, where: str) -> str:
    """A language setting as the tag the rest of mailer compares with: 'kr', 'Korean' and
    '한국어' are written for Korean, but only 'ko' matches a contact's or a release's language."""
    tag = normalise(from_name(value) or value)
    if not re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{1,8})*", tag):
        raise ConfigError(f'{where}: {value!r} is not a language code (write e.g. "en" or "ko")')
    return tag


def _coerce_text(setting: Setting, value: Any, where: str, from_env: bool) -> Any:
    """Human-facing text: one string for every language, or a table {language: text}."""
    if from_env and isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(
                f"{where}: expected text or a JSON object of texts per language, got {value!r}"
            ) from None
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for tag, text in value.items():
            language = normalise(from_name(tag) or tag)
            if not re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{1,8})*", language):
                raise ConfigError(
                    f"{where}: {tag!r} is not a language code (write e.g. "
                    f'{setting.name} = {{en = "...", ko = "..."}})'
                )
            out[language] = _coerce(
                Setting(setting.name, "str", "", ""), text, f"{where}.{tag}", from_env
            )
        return out
    if setting.name == "about" and isinstance(value, str):
        return {"": _coerce(Setting(setting.name, "str", "", ""), value, where, from_env)}
    return _coerce(Setting(setting.name, "str", "", ""), value, where, from_env)


def _build(base_dir: Path, source: str, values: dict[str, Any]) -> Settings:
    kwargs: dict[str, Any] = {"base_dir": base_dir, "source": source}
    default_language = values.get("default_language", "en")
    for s in SETTINGS:
        value = values.get(s.name, s.default)
        if s.kind == "text" and isinstance(value, dict) and s.name != "about":
            # A str that is the default language's text and knows the others (mailer.localtext).
            # Lazy: `lists ls` imports no more than it did (mailer.localtext); few settings need it.
            from mailer.localtext import LocalText  # noqa: PLC0415

            value = LocalText(value, default_language)
        elif s.name == "about" and "" in value:
            # One About text for every language: it is the default language's, and the others
            # fall back to it.
            value = {default_language: value[""]}
        if s.kind == "path":
            value = (base_dir / value) if value else None
        if s.name == "database_url":
            value = _resolve_sqlite(value, base_dir)
        kwargs[s.name] = value
    if kwargs["outbox_dir"] is None:
        kwargs["outbox_dir"] = base_dir / "outbox"
    if kwargs["media_dir"] is None:
        kwargs["media_dir"] = base_dir / "media"
    return Settings(**kwargs)


def _resolve_sqlite(url: str, base_dir: Path) -> str:
    """Make a relative SQLite path absolute against the config file's folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite://":
        rest = url[len(prefix) :]
        if rest and rest != ":memory:":
            return prefix + str(base_dir / rest)
    return url


def _validate(
    settings: Settings, config_path: Path, origin: Mapping[str, tuple[str, str]] | None = None
) -> None:
    where = str(config_path) if settings.source != "defaults" else "settings"
    origin = origin or {}

    def bad(name: str, message: str) -> ConfigError:
        # "FILE: NAME: message (line N)", or "environment variable MAILER_NAME: message".
        prefix, suffix = origin.get(name, (f"{where}: {name}", ""))
        return ConfigError(f"{prefix}: {message}{suffix}")

    if settings.transport not in ("outbox", "smtp"):
        raise bad("transport", f"expected 'outbox' or 'smtp', got {settings.transport!r}")
    if settings.transport == "smtp" and not settings.smtp_url:
        raise bad("transport", "is 'smtp' but smtp_url is empty")
    if settings.smtp_url:
        scheme = urlsplit(settings.smtp_url).scheme
        if scheme not in ("smtp", "smtps"):
            raise bad(
                "smtp_url", f"expected smtp:// or smtps://, got {mask_url(settings.smtp_url)!r}"
            )
    if not settings.base_url.startswith(("http://", "https://")) or re.search(
        r'[\s<>"\\^`{|}]', settings.base_url
    ):
        raise bad("base_url", f"expected an http(s) URL, got {settings.base_url!r}")
    for name in ("concurrency", "ledger_group_size", "batch_size"):
        if getattr(settings, name) < 1:
            raise bad(name, f"expected at least 1, got {getattr(settings, name)}")
    if settings.timezone:
        try:
            ZoneInfo(settings.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise bad(
                "timezone",
                "expected an IANA time zone such as America/New_York or "
                f"Asia/Seoul, got {settings.timezone!r}",
            ) from None
    for name in ADDRESS_SETTINGS:
        value = getattr(settings, name)
        if (value or name == "from_address") and not _HEADER_ADDRESS.match(value):
            raise bad(name, f"expected an email address, got {value!r}")
    if settings.console_listen and not re.fullmatch(
        r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}", settings.console_listen
    ):
        raise bad(
            "console_listen",
            f"expected host:port such as 127.0.0.1:8001, got {settings.console_listen!r}",
        )
    if settings.console_url and (
        not settings.console_url.startswith(("http://", "https://"))
        or re.search(r'[\s<>"\\^`{|}]', settings.console_url)
    ):
        raise bad("console_url", f"expected an http(s) URL, got {settings.console_url!r}")
    for name in (
        "console_idle_minutes",
        "console_session_hours",
        "console_max_upload_bytes",
        "media_max_bytes",
        "attach_max_bytes",
        "bounce_raw_max_bytes",
    ):
        if getattr(settings, name) < 1:
            raise bad(name, f"expected at least 1, got {getattr(settings, name)}")
    if not 0 <= settings.complaint_pause_rate < 1:
        raise bad(
            "complaint_pause_rate",
            f"expected a share between 0 and 1 such as 0.003, got {settings.complaint_pause_rate}",
        )
    for name in (
        "complaint_pause_min_delivered",
        "provider_refusal_streak",
        "engagement_retention_days",
        "click_machine_seconds",
    ):
        if getattr(settings, name) < 0:
            raise bad(name, f"expected 0 or more, got {getattr(settings, name)}")
    for name in ("provider_backoff_seconds", "provider_backoff_max_seconds"):
        if getattr(settings, name) < 1:
            raise bad(name, f"expected at least 1, got {getattr(settings, name)}")
    # A path of its own under the site (never "/", which would shadow the subscriber pages, and
    # never one of theirs or the console's).
    if not re.fullmatch(r"(/[a-z0-9][a-z0-9._-]*)+", settings.newsroom_path) or (
        settings.newsroom_path.split("/")[1] in _TAKEN_PATHS
    ):
        raise bad(
            "newsroom_path",
            f'expected a path such as "/news" (lower-case letters, digits, ".", "_", "-"; '
            f"not /admin, /static or another page's), got {settings.newsroom_path!r}",
        )


def console_address(settings: Settings) -> str:
    """Where staff open the console (links in invitations and reset emails), without a final /."""
    if settings.console_url:
        return settings.console_url.rstrip("/")
    if settings.console_listen:
        return f"http://{settings.console_listen}"
    return settings.base_url.rstrip("/")


def placeholder_settings(settings: Settings) -> list[Setting]:
    """The settings still at their placeholder (see Setting.placeholder), in declaration order."""
    found = []
    for s in SETTINGS:
        if s.placeholder:
            value = getattr(settings, s.name)
            # Per-language text (mailer.localtext.LocalText) is a str too: check every language.
            texts = [str(value), *getattr(value, "values", {}).values()]
            if any(text == s.default or not str(text).strip() for text in texts):
                found.append(s)
    return found


def placeholder_message(settings: Settings, found: list[Setting]) -> str:
    """One message naming every setting in `found`, its value, and the lines that fix it."""
    where = settings.source if settings.source != "defaults" else "settings"
    file = settings.source if settings.source != "defaults" else CONFIG_NAME
    described = ", ".join(
        f"{s.name} is empty"
        if not str(getattr(settings, s.name)).strip()
        else f"{s.name} is still the example {getattr(settings, s.name)!r}"
        for s in found
    )
    law = (
        " (the footer must show the organisation's postal address: CAN-SPAM, and Gmail and "
        "Yahoo bulk-sender rules)"
        if any(s.name == "postal_address" for s in found)
        else ""
    )
    fix = "\n".join(
        f"    {s.name} = {json.dumps(s.placeholder, ensure_ascii=False)}" for s in found
    )
    envs = ", ".join(ENV_PREFIX + s.name.upper() for s in found)
    return (
        f"{where}: {described}: set {'them' if len(found) > 1 else 'it'} to your "
        f"organisation's own before mail goes to real readers{law}. In {file}, e.g.:\n"
        f"{fix}\n  (or the environment variable{'s' if len(found) > 1 else ''} {envs})"
    )


def refuse_placeholders(settings: Settings) -> None:
    """Raise ConfigError when any setting is still at its placeholder (before a real send)."""
    found = placeholder_settings(settings)
    if found:
        raise ConfigError(placeholder_message(settings, found))


def config_template(secret_key: str | None = None) -> str:
    """The text of a new mailer.toml: a fresh secret and every other setting commented."""
    key = secret_key or secrets.token_urlsafe(32)
    lines = [
        "# mailer settings. Every setting is listed with its default; uncomment to change.",
        "# Environment variables MAILER_<NAME> (e.g. MAILER_SMTP_URL) override this file.",
        "",
        "# Signs the links in every message (unsubscribe, confirm, preferences). Keep it secret;",
        "# changing it breaks every link already sent.",
        f"secret_key = {json.dumps(key)}",
        "",
    ]
    for s in SETTINGS:
        if s.name == "secret_key":
            continue
        lines.append(f"# {s.help}")
        if s.placeholder:
            lines.append("# SET THIS before sending to real readers: the default is a placeholder.")
        lines.append(f"# {s.name} = {_toml_value(s.default)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in value.items())
        return "{" + inner + "}"
    return json.dumps(value, ensure_ascii=False)
