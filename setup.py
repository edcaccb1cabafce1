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
    # The local warehouse. 1.5.x is the line the BigQuery emulator also needs.
    "duckdb>=1.5.5,<1.6",
]

DEV = [
    "pytest>=8,<10",
    "ruff>=0.15,<0.18",
    "mypy>=1.15,<3",
    "moto[server]>=5.1,<6",
]

setup(
    name="stripe-contributions-pipeline",
    version="0.1.0",
    description="Stripe one-off contribution events to contribution and acquisition records.",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["pipelines*", "transforms*", "schemas*", "tools*"]),
    package_data={"": ["*.json", "*.sql"]},
    install_requires=RUNTIME,
    extras_require={"dev": DEV},
)
