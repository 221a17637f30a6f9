"""Staff accounts for the console: roles, passwords, sessions, one-time links, two-factor login.

Nothing here knows about Flask: the console (mailer.web.console) and `mailer users` both call
these functions, so a rule (a lockout, a revoked session) holds the same from either side.
"""
