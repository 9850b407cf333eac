"""Conventions shared by the command-line entry points (cifar10, imagenet)."""

EXIT_DATA, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130


class UsageError(Exception):
    """A problem with the options, reported in one line (exit status 2)."""


def add_distillation_arguments(parser, teacher_example):
    """--teacher_model, --dist_lambda, --dist_temp, as the original LM command had them."""
    group = parser.add_argument_group('distillation')
    group.add_argument('--teacher_model', default=None, metavar='PATH',
                       help='run folder (or checkpoint folder) of a trained model, e.g. a %s '
                            'run of this command; its logits teach the student in every phase'
                            % teacher_example)
    group.add_argument('--dist_lambda', type=float, default=0.5,
                       help='weight of the soft (teacher) loss')
    group.add_argument('--dist_temp', type=float, default=1.0, help='softmax temperature')
    return group
