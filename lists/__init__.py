"""Sample contact lists, shipped in the wheel as mailer.sample_lists (used by `mailer demo`)."""
