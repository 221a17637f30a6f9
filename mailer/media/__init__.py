"""Press-kit files: the photos and documents a release folder holds and its Markdown names.

`refs` says what a stored file is and how a release links to it (no I/O); `sniff` tells a file's
type by its content; `images` makes the email-width copies (Pillow); `scan` finds, checks and
prepares the files a release names; `store` keeps them (media_dir and the media_file and
release_media tables); `access` decides who may fetch one at /media/ (mailer/web/media.py).
"""
