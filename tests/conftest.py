"""Shared pytest fixtures: each lives in `tests/fixtures/` and is re-exported here."""

from tests.fixtures.aws_faults import aws_faults
from tests.fixtures.moto_server import moto_server
from tests.fixtures.postgres import postgres_database, postgres_server

__all__ = ["moto_server", "postgres_database", "postgres_server"]
__all__ += ["aws_faults"]
from tests.fixtures.bigquery import bigquery_emulator  # noqa: E402

__all__ += ["bigquery_emulator"]
from tests.fixtures.identity_api import identity_api  # noqa: E402

__all__ += ["identity_api"]
from tests.fixtures.warehouses import both_warehouses  # noqa: E402

__all__ += ["both_warehouses"]

from tests.fixtures.metadata_server import metadata_server  # noqa: E402

__all__ += ["metadata_server"]

from tests.fixtures.dataflow_api import dataflow_api  # noqa: E402

__all__ += ["dataflow_api"]
