"""Train the character-aware (Strassen) word language model on Penn Treebank.

The command line of the original StrassenNets ``langmod/train.py`` (same option names, defaults
and meaning), with its defects fixed (see langmod/README.md). From the repository, or as the
original README says from this folder:

    python -m langmod.train --quant_mode 5 --max_epochs 40 --decay_when 0.5 --learning_rate 2
    python3 train.py --quant_mode 2 --max_epochs 20 --decay_when 0.5 --nbr_mul 1.0 \\
        --out_nbr_mul 2000 --learning_rate 0.2 --epochs_pre 20 --learning_rate_pre 2
    python -m langmod.train --quant_mode 2 --init_from langmod/logs/qm5-... --max_epochs 4

quant_mode (the table is lm.QUANT_MODES): 0 dense layers of the SPN model, 1 full-precision
SPNs, 2 W_b and W_c ternary (the Strassen LM), 3 only W_b ternary, 4 only W_c ternary, 5 the
full-precision baseline (teacher), 6 W_c = identity and W_b ternary with a learned scale per
output, 7 TWN (6 without ã and without the dense SPNs' batch norm).

The options are lm.LMConfig's fields; this file only parses them and calls ``lm.train`` (the
shared run driver). Exit statuses: 0 done, 1 data missing or bad, 2 bad options, 3 diverged,
130 interrupted.
"""
import sys

from strassen_gluon import cli

from langmod import lm
from langmod.lm import LMConfig, QUANT_MODES, model_spec, plan_stages  # noqa: F401 (API)


def build_parser():
    return cli.build_parser(
        LMConfig, 'python -m ' + lm.MODULE,
        description='Train a word+character-level language model (StrassenNets, Penn Treebank)')


def parse_args(argv=None):
    """(LMConfig, the option names written on the command line)."""
    return cli.parse(build_parser(), LMConfig, argv)


def main(argv=None):
    """Run (or resume) one training run; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config, explicit = parse_args(argv)
    return cli.run_command(lm.train, config, explicit, cli.command_line(lm.MODULE, argv))


if __name__ == '__main__':
    sys.exit(main())
