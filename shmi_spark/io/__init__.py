"""Reading and writing: the run's inputs and outputs, and nothing else.

* :mod:`~shmi_spark.io.paths` — local paths and Hadoop URIs (the one home of that test);
* :mod:`~shmi_spark.io.contract` — the input contract: accepted physical types, canonical types (METHOD.md §1);
* :mod:`~shmi_spark.io.ingest` — find, inspect (before Spark) and read the input files;
* :mod:`~shmi_spark.io.reference` — the trust, diagnosis-group and Charlson reference tables (pandas);
* :mod:`~shmi_spark.io.inputs` — a run's inputs, checked before Spark starts;
* :mod:`~shmi_spark.io.outputs` — staged, locked output folders that never destroy;
* :mod:`~shmi_spark.io.filesystems` — the local disk and Hadoop's FileSystem, for those folders;
* :mod:`~shmi_spark.io.publish` — writing tables, disclosure control (METHOD.md §9);
* :mod:`~shmi_spark.io.runlog` — the run's log file.
"""

__all__: list[str] = []
