"""Shared pytest fixtures: each lives in `tests/fixtures/` and is re-exported here."""

from tests.fixtures.moto_server import moto_server

__all__ = ["moto_server"]
