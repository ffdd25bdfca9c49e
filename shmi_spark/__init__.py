"""shmi-spark: the Summary Hospital-level Mortality Indicator computed with PySpark.

The pipeline stages, each a module with one documented output table:
``ingest`` → ``validate`` → ``spells`` → ``linkage`` → ``cells`` → ``models`` →
``expected`` → ``indicator`` → ``publish``.  ``METHOD.md`` (in ``shared/``) is the
specification; every docstring cites its section.
"""

__version__ = "0.1.0"
