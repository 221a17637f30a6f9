"""The subscriber side without Flask: double opt-in, preferences, page words, page templates."""
