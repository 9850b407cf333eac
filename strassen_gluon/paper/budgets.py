"""Every budget of every paper table, in one place: the options each cell's command gets.

``paper`` adds nothing for the schedules (the commands' defaults are the paper's), ``cpu`` is
a short recipe for a 2-core CPU, ``smoke`` a tiny run of a few cells on generated data (for the
tests; pass ``--data_dir`` of a fake dataset). To retune a budget, change its numbers here:
nothing else in the package repeats them.

A :class:`Budget` gives the options of a table's cells (they follow the cell's own options on
the command line, so where both set one, the budget's wins: the smoke budget's tiny PTB decoder):

* ``common``: every cell; ``dense``: the full-precision cells; ``strassen``: the Strassen
  cells; ``by_model``: extra options of one model's cells (e.g. a VGG-7 subset);
* ``start``: ``scratch`` (every network from random weights; a cell with distillation gets
  ``--teacher_model`` pointing at its dense twin's run folder) or ``init_from`` (a Strassen cell
  starts from its dense twin's run folder, or from ``source`` when given, which then also
  teaches; a cell without distillation in a table whose grid has both gets ``--dist_lambda 0``);
* ``dense=None``: the budget trains no dense cell (``source`` provides the dense network);
* ``seeds``: one run per seed and cell (empty: the command's default seed);
* ``cells``: only these cells of the grid (the smoke budget's few).
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple


@dataclass(frozen=True)
class Budget:
    description: str
    common: Tuple[str, ...] = ()
    dense: Optional[Tuple[str, ...]] = ()
    strassen: Tuple[str, ...] = ()
    by_model: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    start: str = 'scratch'
    source: Optional[str] = None
    seeds: Tuple[int, ...] = ()
    cells: Optional[Tuple[str, ...]] = None


CPU_DEVICE = ('--gpu_index', '-1')
# The cpu budgets compute in bfloat16 where the CPU has fast kernels for it (docs/precision.md).
CPU = CPU_DEVICE + ('--dtype', 'auto')
SMOKE_DEVICE = CPU_DEVICE + ('--quiet',)

# --------------------------------------------------------------------------------- CIFAR-10
# cpu: the headline recipe (issue 18): the dense twin trains 70 epochs with a cosine rate and
# weight decay 5e-4 (short schedules want more decay than the paper's 1e-4); each Strassen cell
# is converted from it with --init_from (exact at r = c_out, p = 1, so no full-precision epoch)
# and distilled from it through 24 ternary epochs (cosine from 0.005) and 2 frozen ones, with
# W_c held at the conversion's identity (--freeze_wc): with W_c free, ternary flips of its
# off-diagonal entries each add a whole filter to another channel, and the converted start is
# lost even at lr 0.001 (docs/reproduce.md). Measured for the notebook's cell in bfloat16 on a
# 2-core Zen 4: 2.60 hours, 91.60% dense and 90.92% Strassen (goals 91.25 and 90.5; with 50
# dense epochs 91.06% and 90.41%). VGG-7
# costs 15x ResNet-20's multiplications, so its cells train on a 5,000-image subset.
CIFAR_SHORT = ('--lr_shape', 'cosine', '--wd', '5e-4')
CIFAR_SMOKE_DATA = ('--no_download', '--no_strict_counts', '--batch_size', '16', '--max_batches',
                    '2', '--max_eval_batches', '1')
CIFAR10 = {
    'paper': Budget('the notebook\'s schedule: 250 full-precision + 40 ternary + 10 frozen '
                    'epochs, every network from scratch (days per cell on a CPU; a GPU run)'),
    'cpu': Budget('dense twin 70 epochs (cosine, wd 5e-4), then each Strassen cell converted '
                  'from it (--init_from) and distilled: 0 + 24 + 2 epochs (cosine from 0.005) '
                  'with W_c held at the identity (--freeze_wc); VGG-7 cells on a 5,000-image '
                  'subset',
                  common=CPU + CIFAR_SHORT,
                  dense=('--epochs_fp', '70'),
                  strassen=('--epochs_fp', '0', '--epochs_quant', '24', '--epochs_frozen', '2',
                            '--lr_quant', '0.005', '--lr_frozen', '0.0002', '--freeze_wc'),
                  by_model={'vgg7': ('--train_subset', '5000'),
                            'st_vgg7': ('--train_subset', '5000')},
                  start='init_from'),
    'smoke': Budget('two batches of 16 per epoch on generated data: the dense ResNet-20 and '
                    'the notebook\'s cell converted from it',
                    common=CIFAR_SMOKE_DATA + SMOKE_DEVICE,
                    dense=('--epochs_fp', '1'),
                    strassen=('--epochs_fp', '1', '--epochs_quant', '1', '--epochs_frozen', '1'),
                    start='init_from', cells=('resnet20', 'st_resnet20-r1-p1')),
}

# --------------------------------------------------------------------------------- ImageNet
# cpu: no dense training (70 epochs of ImageNet are out of reach); every Strassen cell starts
# from gluoncv's trained ResNet-18 and fine-tunes on 200 batches of 32 per epoch.
IMAGENET = {
    'paper': Budget('SPEC 2.5: 70 full-precision + 10 ternary + 5 frozen epochs, batch 128; '
                    'distilled cells learn from the dense ResNet-18 cell'),
    'cpu': Budget('each Strassen cell converted from gluoncv:resnet18_v1 (--init_from: 1 + 2 '
                  '+ 1 epochs of 200 batches of 32, validation on 50 batches); no dense run',
                  common=CPU + ('--batch_size', '32', '--max_batches', '200',
                                       '--max_eval_batches', '50', '--num_workers', '2'),
                  dense=None, start='init_from', source='gluoncv:resnet18_v1'),
    # The distilled cells (p = 2) take minutes to convert even at 32x32: the smoke budget
    # converts the r = c_out, p = 1 cell only (distilled cells: see the ptb smoke budget).
    'smoke': Budget('4 classes of 32x32 generated images, 2 batches of 4: the dense ResNet-18 '
                    'and the r = c_out, p = 1 cell converted from it',
                    common=('--classes', '4', '--image_size', '32', '--batch_size', '4',
                            '--max_batches', '2', '--num_workers', '1') + SMOKE_DEVICE,
                    dense=('--epochs_fp', '1'),
                    strassen=('--epochs_fp', '1', '--epochs_quant', '1', '--epochs_frozen', '0'),
                    start='init_from',
                    cells=('resnet18', 'st_resnet18-r1-p1-g1')),
}

# ------------------------------------------------------------------------------ Penn Treebank
# paper: the authors' command lines (SPEC 2.3). cpu: the dense LM trains 4 epochs of 400
# batches (280,000 words each), then every Strassen cell is converted from it and trains 2
# epochs of 200 batches, distilled or not.
PTB_SMOKE_MODEL = ('--rnn_size', '8', '--feature_maps', '3', '4', '--kernels', '1', '2',
                   '--highway_layers', '1', '--num_layers', '2', '--char_vec_size', '5',
                   '--batch_size', '3', '--seq_length', '4', '--out_nbr_mul', '6',
                   '--print_every', '0')
PTB = {
    'paper': Budget('the authors\' commands: dense 40 epochs at lr 2; Strassen 20 '
                    'full-precision + 20 ternary epochs (lr 2, then 0.2); distilled cells '
                    'learn from the dense cell',
                    dense=('--max_epochs', '40', '--decay_when', '0.5', '--learning_rate', '2'),
                    strassen=('--max_epochs', '20', '--decay_when', '0.5', '--learning_rate',
                              '0.2', '--epochs_pre', '20', '--learning_rate_pre', '2')),
    'cpu': Budget('dense LM 4 epochs of 400 batches, then each Strassen cell converted from it '
                  '(--init_from) for 2 epochs of 200 batches at lr 0.2, distilled or not',
                  common=CPU + ('--decay_when', '0.5'),
                  dense=('--max_epochs', '4', '--max_batches', '400', '--learning_rate', '2'),
                  strassen=('--max_epochs', '2', '--max_batches', '200', '--learning_rate',
                            '0.2'),
                  start='init_from'),
    'smoke': Budget('a tiny LM on generated text, 3 batches: the dense LM and one converted '
                    'cell with and without distillation',
                    common=PTB_SMOKE_MODEL + SMOKE_DEVICE + ('--max_epochs', '1', '--max_batches',
                                                             '3', '--max_eval_batches', '2'),
                    start='init_from', cells=('charlm', 'st_charlm-r1', 'st_charlm-r1-kd')),
}

# -------------------------------------------------------------------------------- counting
# Counting and the matmul search are cheap: the paper's budget is also the CPU's.
COUNT_ALL = Budget('all 45 entries of poster Table 1 (counting only, seconds)')
COUNTING = {
    'paper': COUNT_ALL,
    'cpu': COUNT_ALL,
    'smoke': Budget('two entries', cells=('count-r6-p1-g1', 'count-r0.5-p2-g1')),
}

# ------------------------------------------------------------------- matrix multiplication
MATMUL_SEEDS = Budget('2x2x2 at rank 7 with the command\'s defaults, seeds 0-19 (the paper '
                      'publishes no success rate; about 5 s per seed)', seeds=tuple(range(20)))
MATMUL = {
    'paper': MATMUL_SEEDS,
    'cpu': MATMUL_SEEDS,
    'smoke': Budget('seeds 0 and 1, one short restart each (300 + 300 + 100 steps)',
                    common=('--restarts', '1', '--fp_steps', '300', '--anneal_steps', '300',
                            '--ternary_steps', '100'),
                    seeds=(0, 1)),
}

BUDGETS = {'counting': COUNTING, 'cifar10': CIFAR10, 'imagenet': IMAGENET, 'ptb': PTB,
           'matmul': MATMUL}
