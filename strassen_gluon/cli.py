"""Conventions shared by the command-line entry points (cifar10, imagenet)."""

EXIT_DATA, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130


class UsageError(Exception):
    """A problem with the options, reported in one line (exit status 2)."""
