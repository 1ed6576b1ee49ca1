"""safetynet: a streaming anti-scam system on Apache Beam.

Also works as Beam's ``--setup_file`` for Dataflow workers: it installs the seven
packages (``pipelines``, ``core``, ``transforms``, ``schemas``, ``simulator``,
``report``, ``connectors``), the ``.avsc`` schemas, the report's templates and the
exact pins below. The full transitive lock used locally is ``requirements.lock``.
"""

from setuptools import setup

# Direct dependencies, pinned exactly. River above all: models pickled in pipeline state
# must load again in the same version.
REQUIRES = [
    "apache-beam[gcp]==2.77.0",
    "river==0.26.1",
    "fastavro==1.13.1",
    "pyarrow==25.0.1",
    "google-cloud-pubsub==2.44.0",
    "numpy==2.4.6",
    "matplotlib==3.11.2",
    "Jinja2==3.1.6",
    "MarkupSafe==3.0.4",
]

setup(
    name="safetynet",
    version="0.1.0",
    description="Streaming anti-scam system: 24h Safety Net holds, rapid recovery, outreach",
    python_requires=">=3.11,<3.12",
    packages=["pipelines", "core", "transforms", "schemas", "simulator", "report",
              "connectors"],
    package_data={"schemas": ["*.avsc"], "report": ["templates/*.html", "templates/*.css"]},
    include_package_data=True,
    install_requires=REQUIRES,
    extras_require={"test": ["pytest==9.2.0", "pytest-timeout==2.4.0", "pytest-xdist==3.8.0",
                            "ruff==0.17.6"]},
    entry_points={"console_scripts": ["safetynet=pipelines.cli:main"]},
)
