"""What the tests share: servers, fixtures and builders. Test modules import from here, never from
each other; fixture modules are registered once in tests/conftest.py (pytest_plugins)."""
