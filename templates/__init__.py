"""The shipped layouts (email/, web/): Jinja2 templates users may override by name."""
