"""The Spark engine (``likelens scan --engine spark``): the scan's pipeline on Apache Spark.

``session`` starts Spark (or says what is missing), ``ingest`` reads, validates, quarantines
and pseudonymises the input with a task per file, ``engine`` answers the detectors' keyed
aggregates in Spark SQL and runs the window kernel per bucket of targets. Importing this
package does not import PySpark.
"""
