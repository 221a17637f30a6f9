"""Release drafts (mailer.releases.drafts): versions, optimistic saves, diffs, folders, uploads,
and `mailer release export / import / drafts` giving back the very bytes they read."""

from __future__ import annotations

import io
import os
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from mailer.config import Settings
from mailer.errors import InvalidInputError, MailerError, ReleaseError
from mailer.media import store as media_store
from mailer.releases import draft_text, drafts
from mailer.releases.source import load_release
from mailer.store.models import Event, MediaFile
from tests.support.cli import Cli
from tests.support.media import image_bytes, pdf, photo, write_release

EN = (
    "---\ntitle: Hello\ndate: 2026-12-01\nlists: [press]\n# a comment, kept\n"
    "subject: 'Kept: as written'\n---\n\nBody.\n"
)
KO = "---\ntitle: 안녕하세요\n---\n\n본문.\n"


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _new(session: Session, settings: Settings, slug: str = "budget") -> int:
    draft = drafts.create_draft(session, settings, slug, {"en": EN, "ko": KO}, author="user:a@x")
    session.commit()
    return draft.id


def test_versions_and_stale_save_refused(session: Session, settings: Settings) -> None:
    draft_id = _new(session, settings)
    v2 = drafts.save_version(
        session,
        settings,
        draft_id,
        {"en": EN.replace("Body.", "Body two."), "ko": KO},
        based_on=1,
        author="user:a@x",
    )
    assert v2.number == 2
    # The same text again makes no version.
    same = drafts.save_version(
        session, settings, draft_id, dict(v2.sources), based_on=2, author="user:a@x"
    )
    assert same.number == 2
    # Someone else's save, still based on version 1: refused, naming both versions.
    with pytest.raises(drafts.StaleVersionError) as err:
        drafts.save_version(
            session,
            settings,
            draft_id,
            {"en": EN.replace("Body.", "Mine."), "ko": KO},
            based_on=1,
            author="user:b@x",
        )
    assert "based on version 1" in str(err.value) and "version 2" in str(err.value)
    assert [v.number for v in drafts.versions(session, draft_id)] == [2, 1]
    assert drafts.get_version(session, draft_id).sources["en"].count("Body two.") == 1
    kinds = [e.kind for e in session.query(Event).order_by(Event.id)]
    assert kinds == ["release.draft_created", "release.draft_saved"]


def test_invalid_text_refused_with_file_and_line(session: Session, settings: Settings) -> None:
    draft_id = _new(session, settings)
    bad = "---\ntitle: Hello\ndate: 2026-13-45\n---\nBody\n"
    with pytest.raises(ReleaseError) as err:
        drafts.save_version(
            session, settings, draft_id, {"en": bad, "ko": KO}, based_on=1, author="x"
        )
    assert str(err.value).startswith("budget.en.md:3: date:")
    with pytest.raises(InvalidInputError, match="release name"):
        drafts.create_draft(session, settings, "../etc", {"en": EN}, author="x")
    with pytest.raises(InvalidInputError, match="exists already"):
        drafts.create_draft(session, settings, "budget", {"en": EN}, author="x")


def test_diff_per_language_and_part(session: Session, settings: Settings) -> None:
    draft_id = _new(session, settings)
    drafts.save_version(
        session,
        settings,
        draft_id,
        {
            "en": EN.replace("title: Hello", "title: Hello again"),
            "ko": KO.replace("본문", "새 본문"),
        },
        based_on=1,
        author="x",
    )
    parts = {p.label: p.lines for p in drafts.diff(session, draft_id, 1, 2)}
    assert set(parts) == {"budget.en.md: front matter", "budget.ko.md: body"}
    assert "-title: Hello" in parts["budget.en.md: front matter"]
    assert "+title: Hello again" in parts["budget.en.md: front matter"]
    assert "+새 본문." in parts["budget.ko.md: body"]
    assert drafts.diff(session, draft_id, 2, 2) == []


def test_form_rebuild_keeps_other_keys(session: Session, settings: Settings) -> None:
    values = draft_text.form_values(EN)
    assert (
        values["title"] == "Hello" and values["lists"] == "press" and values["date"] == "2026-12-01"
    )
    # Nothing changed: the very same text (comments, quoting and order kept).
    assert draft_text.rebuild(EN, values, draft_text.body_of(EN), shared=True) == EN
    changed = dict(values, title="New: title", contact_name="Minji Seo", lists="press, media")
    text = draft_text.rebuild(EN, changed, "Body.\r\nSecond line.\r\n", shared=True)
    assert "# a comment, kept\nsubject: 'Kept: as written'\n" in text
    assert "lists: [press, media]\n" in text
    draft_id = _new(session, settings)
    saved = drafts.save_version(
        session, settings, draft_id, {"en": text, "ko": KO}, based_on=1, author="x"
    )
    assert drafts.release_of(saved, "budget", settings).default.meta.lists == ("press", "media")
    again = draft_text.form_values(text)
    assert again["title"] == "New: title" and again["contact_name"] == "Minji Seo"
    assert draft_text.body_of(text) == "Body.\nSecond line.\n"


def test_export_import_round_trip_byte_identical(
    session: Session, settings: Settings, tmp_path: Path, cli: Cli
) -> None:
    source = tmp_path / "in"
    write_release(source, body={"en": "![Crowd](photos/crowd.jpg)\n\n[Guide](guide.pdf)"})
    photo(source / "photos" / "crowd.jpg", 800, 500)
    pdf(source / "guide.pdf")
    (source / "election-night.ko.md").write_bytes(
        b"\xef\xbb\xbf" + (source / "election-night.ko.md").read_bytes().replace(b"\n", b"\r\n")
    )
    session.rollback()
    result = cli("release", "import", str(source))
    assert "new draft" in result.output and "2 press-kit files" in result.output
    out = tmp_path / "out"
    cli("release", "export", "election-night", str(out))
    assert _files(out) == _files(source)
    # Exported, changed by a CLI user, imported again: a new version of the same draft.
    text = (out / "election-night.en.md").read_text(encoding="utf-8")
    (out / "election-night.en.md").write_text(text.replace("Record turnout", "Turnout"), "utf-8")
    assert "draft 1, version 2" in cli("release", "import", str(out)).output
    listing = cli("release", "drafts").output
    assert "election-night" in listing and "Turnout" in listing
    # A mistake is an error naming the file, never a traceback.
    (out / "election-night.ko.md").write_text("---\ntitle: x\nlists: 5\n---\n", "utf-8")
    failed = cli("release", "import", str(out), expect=1)
    assert "election-night.ko.md:3: lists" in failed.output and "Traceback" not in failed.output
    assert (
        "no release draft 'nothing'"
        in cli("release", "export", "nothing", str(out), expect=1).output
    )
    # The materialised folder is what every release command reads.
    path = drafts.materialise(session, settings, 1)
    assert path == tmp_path / "drafts" / "1" / "election-night.en.md"
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert load_release(path).title.startswith("Turnout")
    assert (path.parent / "photos" / "crowd.jpg").read_bytes() == (
        source / "photos" / "crowd.jpg"
    ).read_bytes()


def test_import_errors_name_the_file(session: Session, settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "r"
    write_release(folder, body={"en": "![Crowd](../secret.jpg)"})
    with pytest.raises(InvalidInputError, match=r"election-night\.en\.md:\d+.*\.\."):
        drafts.import_release(session, settings, folder, author="cli")
    (folder / "other.md").write_text("---\ntitle: x\n---\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="several releases"):
        drafts.import_release(session, settings, folder, author="cli")


def test_export_refuses_a_stray_language_file(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    draft_id = _new(session, settings)
    out = tmp_path / "out"
    out.mkdir()
    (out / "budget.fr.md").write_text("---\ntitle: x\n---\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=r"budget\.fr\.md: another file"):
        drafts.export(session, settings, draft_id, out)


def test_materialise_drops_files_of_older_versions(session: Session, settings: Settings) -> None:
    draft_id = _new(session, settings)
    first = drafts.materialise(session, settings, draft_id)
    assert (first.parent / "budget.ko.md").exists()
    drafts.save_version(session, settings, draft_id, {"en": EN}, based_on=1, author="x")
    path = drafts.materialise(session, settings, draft_id)
    assert sorted(p.name for p in path.parent.iterdir()) == [".version", "budget.en.md"]
    # The same version again: the folder is left as it is (a check may be reading it).
    inode = path.stat().st_ino
    assert drafts.materialise(session, settings, draft_id) == path
    assert path.stat().st_ino == inode


def test_uploads(session: Session, settings: Settings, tmp_path: Path) -> None:
    draft_id = _new(session, settings)
    png = image_bytes(40, 30, "PNG")
    version, rel = drafts.upload(
        session,
        settings,
        draft_id,
        "../../etc/Crowd photo.png",
        io.BytesIO(png),
        based_on=1,
        author="x",
        folder="photos",
    )
    assert rel == "photos/Crowd-photo.png" and version.number == 2
    stored = session.get(MediaFile, version.files[rel])
    assert stored is not None and stored.content_type == "image/png" and stored.width == 40
    assert media_store.path_of(settings, stored.sha256).read_bytes() == png
    # A web page named .png, a program, an oversize file, a name that is only dots: refused.
    for name, data, message in (
        ("x.png", b"<html><script>alert(1)</script>", "HTML"),
        ("x.pdf", b"MZ\x90\x00" + b"\x00" * 100, "a program"),
        ("photo.jpg", png, "PNG file by its content"),
        ("...", png, "give the file a name"),
        ("notes.md", b"# hi", "written in the editor"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            drafts.upload(
                session, settings, draft_id, name, io.BytesIO(data), based_on=2, author="x"
            )
    small = replace(settings, media_max_bytes=1000)
    big = pdf(tmp_path / "big.pdf", size=5000).read_bytes()
    with pytest.raises(InvalidInputError, match="larger than"):
        drafts.upload(session, small, draft_id, "big.pdf", io.BytesIO(big), based_on=2, author="x")
    assert drafts.get_draft(session, draft_id).current_version == 2
    # A stale upload is refused like a stale save.
    with pytest.raises(drafts.StaleVersionError):
        drafts.upload(
            session, settings, draft_id, "guide.pdf", io.BytesIO(big), based_on=1, author="x"
        )


def test_hostile_file_paths_never_leave_the_folder(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    for bad in ("../x.png", "/etc/passwd", "a/../../b.png", ".hidden/x.png", "a\\b.png", ""):
        with pytest.raises(InvalidInputError):
            drafts.check_relative(bad)
    draft_id = _new(session, settings)
    with pytest.raises(InvalidInputError, match="inside the release folder"):
        drafts.save_version(
            session,
            settings,
            draft_id,
            {"en": EN, "ko": KO},
            based_on=1,
            author="x",
            files={"../../outside.png": "0" * 64},
        )
    # A symbolic link planted in the export folder is not written through.
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep", encoding="utf-8")
    (out / "budget.en.md").symlink_to(victim)
    with pytest.raises(MailerError, match="symbolic link"):
        drafts.export(session, settings, draft_id, out)
    assert victim.read_text(encoding="utf-8") == "keep"
