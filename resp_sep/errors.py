"""Error types and the exit codes the command line returns for them.

Every error a user can cause (bad file, bad option, missing channel) is a :class:`RespSepError`
carrying a one-line message that names the file and the problem, and the exit code the CLI
returns. Anything else is a bug and exits with :data:`EXIT_INTERNAL`.
"""

from __future__ import annotations

EXIT_OK = 0
#: unexpected internal error (a bug): the CLI prints one line and suggests ``--debug``.
EXIT_INTERNAL = 1
#: bad command-line usage (unknown option, invalid value) - Click's own code.
EXIT_USAGE = 2
#: an input recording cannot be used (missing, unreadable, corrupt, unsupported, too short,
#: channel absent, flat/NaN channel, absurd sampling rate).
EXIT_INPUT = 3
#: a batch run finished but at least one file failed (the others were processed).
EXIT_PARTIAL = 4
#: a model checkpoint is missing, corrupt or incompatible.
EXIT_MODEL = 5
#: the output could not be written (permission, disk full, exists without --overwrite).
EXIT_OUTPUT = 6
#: interrupted by the user (Ctrl-C).
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "internal error (a bug; rerun with --debug and report it)",
    EXIT_USAGE: "invalid command-line usage",
    EXIT_INPUT: "an input recording could not be used",
    EXIT_PARTIAL: "batch finished, but some files failed (listed in the summary)",
    EXIT_MODEL: "model checkpoint missing, corrupt or incompatible",
    EXIT_OUTPUT: "output could not be written",
    EXIT_INTERRUPTED: "interrupted",
}


class RespSepError(Exception):
    """A user-facing error with a one-line message and an exit code.

    Parameters
    ----------
    message : str
        One line, naming the file (when there is one) and the problem.
    path : str, optional
        The file the problem is about; prefixed to the message when given.
    exit_code : int
        The process exit code the CLI returns.
    """

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, path: str | None = None, exit_code: int | None = None):
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(message).split())  # force a single line
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" if self.path else self.problem


class InputError(RespSepError):
    """An input recording cannot be used."""

    exit_code = EXIT_INPUT


class ModelError(RespSepError):
    """A checkpoint is missing, corrupt or incompatible."""

    exit_code = EXIT_MODEL


class OutputError(RespSepError):
    """An output cannot be written."""

    exit_code = EXIT_OUTPUT


class UsageError(RespSepError):
    """An invalid command-line value (exit 2), detected before any work is done."""

    exit_code = EXIT_USAGE
