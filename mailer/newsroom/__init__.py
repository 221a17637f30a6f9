"""The public newsroom: every release on the web from the moment its embargo lifts.

`state` keeps which release is published, which version and from when (the `publication`
table, updated by planning and by the first send); `links` makes its URLs and the signed
preview and view-in-browser links; `catalog` reads what the public may see; `pages` and
`feeds` write the HTML pages, the Atom feeds and the sitemap. No Flask here: mailer/web/newsroom.py
serves them, `mailer news` manages them.
"""
