"""Errors a user can act on. The CLI prints each as one line and exits with its code."""

from __future__ import annotations


class OdaFedError(Exception):
    """Base class for errors a user can fix; ``exit_code`` is documented in the README."""

    exit_code: int = 1


class ConfigError(OdaFedError):
    """A configuration file is missing, malformed or inconsistent."""

    exit_code = 2


class InputDataError(OdaFedError):
    """An input data file cannot be used as it is (missing column, malformed value…)."""

    exit_code = 3


class ProjectMismatchError(OdaFedError):
    """A request or file belongs to a different project than the one pinned."""

    exit_code = 4


class AuthError(OdaFedError):
    """A peer, certificate or key is not acceptable."""

    exit_code = 5


class AuditError(OdaFedError):
    """An audit log fails verification or cannot be written."""

    exit_code = 6


class ProtocolError(OdaFedError):
    """A message from the other side is malformed or out of order."""

    exit_code = 7


class StateError(OdaFedError):
    """Stored state (a database) is damaged or missing; restore it from a backup."""

    exit_code = 8


class ClusterError(OdaFedError):
    """The Dask cluster matching runs on cannot be used: its package is missing, its scheduler
    does not answer, or a worker died. The round stays unmatched; fix the cluster and retry."""

    exit_code = 9
