"""Shared pytest fixtures for every test directory (services, libs, tests/e2e)."""

pytest_plugins = ["tests.support.infra"]
