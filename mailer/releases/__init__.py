"""Releases: source files, Markdown to HTML and text, inlined CSS, personal values, the check."""
