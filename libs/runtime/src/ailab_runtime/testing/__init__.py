"""Test helpers shipped with the runtime: contract tests that every adapter (and its fake) must pass."""
