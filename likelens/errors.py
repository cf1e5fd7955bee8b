"""One error hierarchy, caught once in the CLI.

::

    LikeLensError                      anything LikeLens refuses (exit 2 unless said otherwise)
    ├── InputError(file, row, column)  input that cannot be read as the events contract
    │   └── SchemaError                a required column is missing
    ├── TooManyBadRows                 more quarantined rows than --max-bad-rows (exit 3)
    ├── ScenarioError                  a simulator scenario that cannot be loaded
    ├── LedgerVerificationError        a proof, signature or stored record does not check out
    │   └── CertificateError           a certificate that is forged, altered or revoked (exit 4)
    ├── ModelError                     a model directory that is missing, tampered or too new
    ├── SettingError                   a --set name or value no detector takes
    ├── ServiceError                   the service cannot start or reach its database or queue
    └── EngineError                    an engine (Spark) that is not installed or does not start

Messages are single lines that name the file, and the row and column where known, because the
people reading them are looking at a log file, not at our code.
"""

from __future__ import annotations


class LikeLensError(Exception):
    """Base of every error LikeLens raises on purpose."""

    exit_code = 2


class InputError(LikeLensError):
    """Input that cannot be read as the events contract."""

    def __init__(
        self, message: str, *, file: str | None = None, row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file, self.row, self.column = file, row, column
        where = []
        if file is not None:
            where.append(str(file))
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class SchemaError(InputError):
    """A required column is missing from an input file, or one is given twice."""


class TooManyBadRows(LikeLensError):
    """More rows were quarantined than the caller allows."""

    exit_code = 3


class ScenarioError(LikeLensError):
    """A simulator scenario name or file that cannot be loaded."""


class LedgerVerificationError(LikeLensError):
    """A ledger check failed; says where (index) and the expected against the computed hash."""

    exit_code = 4

    def __init__(self, message: str, *, index: int | None = None, expected: str | None = None,
                 computed: str | None = None) -> None:
        self.index, self.expected, self.computed = index, expected, computed
        super().__init__(message)


class CertificateError(LedgerVerificationError):
    """A quality certificate that does not verify, or that a revocation list revokes."""


class ModelError(LikeLensError):
    """A model directory that cannot be used: missing files, hashes that do not match its
    manifest, a format version this LikeLens does not read."""


class SettingError(LikeLensError):
    """A detector parameter (``--set DETECTOR.PARAM=VALUE``) that no detector takes, or a value
    of the wrong type; the message lists the valid names."""


class ServiceError(LikeLensError):
    """The service cannot start: no data directory or database, a database or Redis that does
    not answer, a key or role that does not exist."""


class EngineError(LikeLensError):
    """An engine that cannot run here: ``--engine spark`` without PySpark or Java, or a Spark
    session that does not start; the message says what to install or set."""
