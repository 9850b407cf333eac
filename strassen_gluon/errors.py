"""The library's exceptions. Library code raises them; only the command entry points turn them
into a message and an exit status (:func:`strassen_gluon.cli.run_command`):

========================  ====  ===============================================================
exception                 exit  meaning
========================  ====  ===============================================================
DataError                 1     data missing or unusable (a file is named in the message)
RunFolderError            1     a run folder cannot be resumed (a file is named in the message)
OutputError               1     an output path cannot be written (checked before the work starts)
PhaseError                1     a network's SPN layers are in a phase the operation refuses
UsageError                2     bad options or configuration
Diverged                  3     the loss or a parameter became NaN or infinite
CheckFailed               4     an exported file disagrees with the network it came from
KeyboardInterrupt         130   Ctrl-C or SIGTERM; the last complete epoch is saved
========================  ====  ===============================================================
"""


class StrassenError(Exception):
    """Base of the library's own errors."""
    exit_status = 1


class DataError(StrassenError):
    """Data missing or unusable."""
    exit_status = 1


class RunFolderError(StrassenError):
    """A run folder holds no checkpoint that verifies, or was made by another command."""
    exit_status = 1


class OutputError(StrassenError):
    """An output file or folder cannot be written; raised before any work is done."""
    exit_status = 1


class PhaseError(StrassenError, ValueError):
    """SPN layers in a phase the operation does not accept (e.g. deploying a network whose W_b
    and W_c are not yet ternary)."""
    exit_status = 1


class UsageError(StrassenError):
    """A problem with the options or the configuration, reported in one line."""
    exit_status = 2


class Diverged(StrassenError):
    """The training loss or a parameter became NaN or infinite."""
    exit_status = 3


class CheckFailed(StrassenError):
    """An exported file computes something else than the network it was exported from."""
    exit_status = 4


EXIT_DONE, EXIT_DATA, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Interrupted(StrassenError):
    """Ctrl-C during training; the message says how to resume."""
    exit_status = EXIT_INTERRUPTED
