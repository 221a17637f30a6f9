"""Where everything is kept: engine and sessions, typed models, schema and migrations, audit log."""
