"""Engagement, privacy first: click tracking, its reports, retention and erasure (no Flask).

See docs/engagement.md: tokens.py, links.py, recorder.py and machines.py record clicks;
report.py reads them for reports; retention.py forgets who clicked.
"""
