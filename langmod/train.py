"""Train the character-aware (Strassen) word language model on Penn Treebank.

The command line of the original StrassenNets ``langmod/train.py`` (same option names, defaults
and meaning), with its defects fixed (see langmod/README.md). Run from this folder, e.g.

    python3 train.py --quant_mode 5 --max_epochs 40 --decay_when 0.5 --learning_rate 2
    python3 train.py --quant_mode 2 --max_epochs 20 --decay_when 0.5 --nbr_mul 1.0 \\
        --out_nbr_mul 2000 --learning_rate 0.2 --epochs_pre 20 --learning_rate_pre 2
    python3 train.py --quant_mode 2 --init_from logs/qm5-... --max_epochs 4 --learning_rate 0.2

quant_mode (the table is lm.QUANT_MODES): 0 dense layers of the SPN model, 1 full-precision
SPNs, 2 W_b and W_c ternary (the Strassen LM), 3 only W_b ternary, 4 only W_c ternary, 5 the
full-precision baseline (teacher), 6 W_c = identity and W_b ternary with a learned scale per
output, 7 TWN (6 without ã and without the dense SPNs' batch norm).

This file only maps the command line onto ``lm.LMConfig`` and calls ``lm.train`` on the shared
training loop; the run folder (config.json, log.jsonl, checkpoints, summary.json) is the one
of every command, and ``--resume RUN_DIR`` continues a run. Exit statuses: 0 done, 1 data
missing or bad, 2 bad options, 3 diverged, 130 interrupted.
"""
import argparse
import math
import os
import sys

if __package__ in (None, ''):  # run as a script from this folder: import the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = 'langmod'

from strassen_gluon import cli  # noqa: E402

from . import lm  # noqa: E402
from .lm import LMConfig, QUANT_MODES, model_spec, plan_phases  # noqa: E402,F401

MODULE = 'langmod/train.py'


def build_parser():
    p = argparse.ArgumentParser(
        description='Train a word+character-level language model (StrassenNets, Penn Treebank)',
        formatter_class=cli.HelpFormatter)
    a = p.add_argument
    # data
    a('--data_dir', type=str, default=None,
      help='folder with ptb.train.txt, ptb.valid.txt, ptb.test.txt (or train.txt, valid.txt, '
           'test.txt) (default: data/ptb next to this script)')
    # model
    a('--rnn_size', type=int, default=650, help='size of LSTM internal state')
    a('--highway_layers', type=int, default=2, help='number of highway layers')
    a('--word_vec_size', type=int, default=650, help='unused (kept from the original)')
    a('--char_vec_size', type=int, default=15, help='dimensionality of character embeddings')
    a('--feature_maps', type=int, nargs='+', default=[50, 100, 150, 200, 200, 200, 200],
      help='number of feature maps in the CNN')
    a('--kernels', type=int, nargs='+', default=[1, 2, 3, 4, 5, 6, 7],
      help='conv net kernel widths')
    a('--num_layers', type=int, default=2, help='number of layers in the LSTM')
    a('--dropout', type=float, default=0.5, help='dropout. 0 = no dropout')
    a('--nbr_mul', type=float, default=1.0,
      help='multiplications r relative to the output units (highway, LSTM; decoder if '
           'out_nbr_mul < 1)')
    a('--out_nbr_mul', type=int, default=2000,
      help='number of multiplications r of the decoder, for quant_mode 1-4')
    a('--quant_mode', type=int, default=0, choices=sorted(QUANT_MODES),
      help='; '.join('%d: %s' % (m, q.meaning) for m, q in QUANT_MODES.items()))
    a('--highway_form', choices=('kim', 'original'), default='kim',
      help="transform gate sigma(W_T x + b_T) with b_T starting at -2 (kim, Kim et al.) or "
           "sigma(W_T (x - 2) + b_T) as the original code (original)")
    a('--init_from', default=None, metavar='RUN_DIR',
      help='start the SPN model from a finished quant_mode 5 run (its char CNN, highway, LSTM '
           'and decoder weights); the dense model also becomes the teacher of quant_mode '
           '2-4, 6, 7 (--dist_lambda 0 turns it off)')
    # optimization
    a('--learning_rate', type=float, default=2, help='starting learning rate')
    a('--learning_rate_decay', type=float, default=0.5, help='learning rate decay')
    a('--decay_when', type=float, default=1,
      help='decay if validation perplexity does not improve by more than this much')
    a('--seq_length', type=int, default=35, help='number of timesteps to unroll for')
    a('--batch_size', type=int, default=20, help='number of sequences to train on in parallel')
    a('--max_epochs', type=int, default=25, help='number of full passes through the training data')
    a('--max_grad_norm', type=float, default=5,
      help='clip the global norm of the token-averaged gradient at this value')
    a('--clip_like_original', action='store_true',
      help='clip as the original code did, effectively at max_grad_norm x seq_length')
    a('--max_word_l', type=int, default=65, help='maximum word length')
    a('--epochs_cont', type=int, default=0,
      help='epochs of continued training with frozen ternary weights')
    a('--epochs_pre', type=int, default=0, help='epochs of full-precision pretraining')
    a('--learning_rate_cont', type=float, default=0.01,
      help='learning rate for continued training with frozen weights')
    a('--learning_rate_pre', type=float, default=0.01,
      help='learning rate for full-precision pretraining')
    a('--n_words', type=int, default=30000, help='max number of words in model')
    a('--n_chars', type=int, default=100, help='max number of char in model')
    # misc
    a('--print_every', type=int, default=50,
      help='how many steps/minibatches between printing out the loss')
    a('--EOS', type=str, default='+',
      help='<EOS> symbol. should be a single unused character (like +) for PTB and blank for '
           'others')
    # distillation
    cli.add_distillation_arguments(p, 'quant_mode 5')
    p.set_defaults(teacher_model=None)
    # short runs
    a('--max_batches', type=int, default=0,
      help='train on at most this many batches per epoch (0: all)')
    a('--max_eval_batches', type=int, default=0,
      help='evaluate on at most this many batches of valid and test (0: all)')
    cli.add_run_arguments(p, None, 'qm<quant_mode>')
    p.set_defaults(seed=123)  # the original's seed
    return p


def parse_args(argv=None):
    """(LMConfig, the option names written on the command line)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, explicit = cli.parse_config(parser, argv)
    for key in ('learning_rate', 'learning_rate_pre', 'learning_rate_cont', 'learning_rate_decay',
                'max_grad_norm', 'dist_lambda', 'dist_temp', 'nbr_mul', 'dropout'):
        if not (math.isfinite(getattr(args, key)) and getattr(args, key) >= 0):
            parser.error('--%s must be a finite number >= 0, not %s' % (key, getattr(args, key)))
    config = cli.config_from_args(LMConfig, args)
    if config.log_dir is None:
        config.log_dir = lm.DEFAULT_LOG_DIR
    return config, explicit


def main(argv=None):
    """Run (or resume) one training run; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config, explicit = parse_args(argv)
    return cli.run_command(lm.train, config, explicit, cli.command_line(MODULE, argv))


if __name__ == '__main__':
    sys.exit(main())
