"""Every user mistake, in every command (the three trainers, count, report, export, matmul and
paper), ends in one line naming the option or the file (advice may follow it, indented), the
documented exit status (2: options, 1: data and files), no traceback, and nothing written.

One table: (command, arguments, exit status, a fragment of the message). The commands run in
this process through their ``main``, as the command line runs them; a bug would surface here as
an exception instead of an exit status.
"""
import pytest

from langmod import train as lm_command
from strassen_gluon import cifar10, count, imagenet, report
from strassen_gluon.errors import EXIT_DATA, EXIT_USAGE
from strassen_gluon.export.__main__ import main as export_main
from strassen_gluon.matmul.cli import main as matmul_main
from strassen_gluon.paper.cli import main as paper_main

from cifar_fixtures import write_fake_cifar
from test_langmod import TINY as LM_TINY, write_corpus

COMMANDS = {'cifar10': cifar10.main, 'imagenet': imagenet.main, 'langmod': lm_command.main,
            'count': count.main, 'report': report.main, 'export': export_main,
            'matmul': matmul_main, 'paper': paper_main}
TRAINING = ('cifar10', 'imagenet', 'langmod')
MATMUL = ['--m', '2', '--k', '2', '--n', '2']

CASES = [
    # Ranges: the same rule from the command line and from train(config).
    ('cifar10', ['--lr_fp', '-1'], EXIT_USAGE, '--lr_fp -1.0: must be > 0'),
    ('cifar10', ['--lr_quant', '0'], EXIT_USAGE, '--lr_quant 0.0: must be > 0'),
    ('cifar10', ['--epochs_fp', '-1'], EXIT_USAGE, '--epochs_fp -1: must be >= 0'),
    ('cifar10', ['--lr_steps_fp', '5,3'], EXIT_USAGE, '--lr_steps_fp 5,3: must be increasing'),
    ('cifar10', ['--momentum', '-3'], EXIT_USAGE, '--momentum -3.0: must be >= 0'),
    ('cifar10', ['--wd', '-1'], EXIT_USAGE, '--wd -1.0: must be >= 0'),
    ('cifar10', ['--dist_lambda', '2'], EXIT_USAGE, '--dist_lambda 2.0: must be <= 1'),
    ('cifar10', ['--dist_temp', '0'], EXIT_USAGE, '--dist_temp 0.0: must be > 0'),
    ('cifar10', ['--seed', '-1'], EXIT_USAGE, '--seed -1: must be >= 0'),
    ('cifar10', ['--max_eval_batches', '0'], EXIT_USAGE, '--max_eval_batches 0: must be >= 1'),
    ('cifar10', ['--batch_size', '0'], EXIT_USAGE, '--batch_size 0: must be >= 1'),
    ('cifar10', ['--train_subset', '0'], EXIT_USAGE, '--train_subset 0: must be >= 1'),
    ('cifar10', ['--nbr_mul', '0'], EXIT_USAGE, '--nbr_mul 0.0: must be > 0'),
    ('cifar10', ['--out_patch', '1,0,1,1'], EXIT_USAGE, '--out_patch 1,0,1,1: must be >= 1'),
    ('cifar10', ['--keep_checkpoints', '0'], EXIT_USAGE, '--keep_checkpoints 0: must be >= 1'),
    ('cifar10', ['--lr_factor', '0'], EXIT_USAGE, '--lr_factor 0.0: must be > 0'),
    ('cifar10', ['--lr_fp', 'nan'], EXIT_USAGE, '--lr_fp nan: must be a finite number'),
    # Parse errors: one line too.
    ('cifar10', ['--lr_fp', 'abc'], EXIT_USAGE, "argument --lr_fp: invalid float value: 'abc'"),
    ('cifar10', ['--model', 'resnet99'], EXIT_USAGE, 'argument --model: invalid choice'),
    ('cifar10', ['--nbr_mul', '1,2'], EXIT_USAGE, "'1,2' has 2 values"),
    ('cifar10', ['--dtype', 'float16'], EXIT_USAGE, 'argument --dtype: invalid choice'),
    # Paths.
    ('cifar10', ['--log_dir', '{file}/runs'], EXIT_DATA, '--log_dir {file}/runs/'),
    ('cifar10', ['--data_dir', '{tmp}/nowhere', '--no_download'], EXIT_DATA, 'nowhere'),
    ('cifar10', ['--resume', '{tmp}/nowhere'], EXIT_USAGE, 'not a run folder'),
    ('cifar10', ['--data_dir', '{cifar}', '--no_strict_counts', '--batch_size', '16',
                 '--init_from', '{tmp}/nowhere'], EXIT_USAGE,
     '--init_from {tmp}/nowhere: no such folder'),
    ('cifar10', ['--data_dir', '{cifar}', '--no_strict_counts', '--batch_size', '16',
                 '--teacher_model', '{tmp}/nowhere'], EXIT_USAGE, '{tmp}/nowhere: no such folder'),
    ('cifar10', ['--data_dir', '{cifar}', '--no_strict_counts', '--train_subset', '100000'],
     EXIT_USAGE, '--train_subset'),
    ('imagenet', ['--lr_fp', '-1'], EXIT_USAGE, '--lr_fp -1.0: must be > 0'),
    ('imagenet', ['--groups', '0'], EXIT_USAGE, '--groups 0: must be >= 1'),
    ('imagenet', ['--image_size', '0'], EXIT_USAGE, '--image_size 0: must be >= 1'),
    ('imagenet', ['--lr_steps_fp', '3,3'], EXIT_USAGE, '--lr_steps_fp 3,3: must be increasing'),
    ('imagenet', ['--out_patch', '1,2,1,2'], EXIT_USAGE, "'1,2,1,2' has 4 values"),
    ('imagenet', [], EXIT_USAGE, '--train_rec and --val_rec are required'),
    ('imagenet', ['--train_rec', '{tmp}/no.rec', '--val_rec', '{tmp}/no.rec'], EXIT_DATA,
     '{tmp}/no.rec: no such file'),
    ('imagenet', ['--log_dir', '{file}'], EXIT_DATA, '--log_dir {file}/'),
    ('langmod', ['--max_epochs', '-1'], EXIT_USAGE, '--max_epochs -1: must be >= 0'),
    ('langmod', ['--dropout', '1.5'], EXIT_USAGE, '--dropout 1.5: must be < 1'),
    ('langmod', ['--batch_size', '0'], EXIT_USAGE, '--batch_size 0: must be >= 1'),
    ('langmod', ['--seq_length', '0'], EXIT_USAGE, '--seq_length 0: must be >= 1'),
    ('langmod', ['--out_nbr_mul', '0'], EXIT_USAGE, '--out_nbr_mul 0: must be >= 1'),
    ('langmod', ['--learning_rate', 'nan'], EXIT_USAGE, '--learning_rate nan: must be a finite'),
    ('langmod', ['--quant_mode', '9'], EXIT_USAGE, 'argument --quant_mode: invalid choice'),
    ('langmod', ['--feature_maps', '3', '--kernels', '1', '2'], EXIT_USAGE,
     '--feature_maps has 1 values and --kernels 2'),
    ('langmod', ['--data_dir', '{tmp}/nowhere'], EXIT_DATA, 'nowhere'),
    ('langmod', ['--data_dir', '{ptb}', '--log_dir', '{file}/logs'], EXIT_DATA, '--log_dir'),
    ('langmod', ['--data_dir', '{ptb}', '--init_from', '{tmp}/nowhere', '--quant_mode', '2'],
     EXIT_USAGE, '--init_from {tmp}/nowhere: no such folder'),
    ('count', ['--model', 'resnet99'], EXIT_USAGE, 'argument --model: invalid choice'),
    ('count', ['--model', 'st_resnet20', '--nbr_mul', '1,2'], EXIT_USAGE, "'1,2' has 2 values"),
    ('count', ['--model', 'st_charlm'], EXIT_USAGE, 'give each with --set KEY=VALUE'),
    ('report', ['{tmp}/nowhere'], EXIT_USAGE, '{tmp}/nowhere is not a folder'),
    ('report', ['{tmp}', '--out', '{file}/report'], EXIT_DATA, '--out {file}/report'),
    ('export', ['{tmp}'], EXIT_USAGE, 'give --onnx FILE, --packed FILE.npz or both'),
    ('export', ['{tmp}/nowhere', '--onnx', '{tmp}/x.onnx'], EXIT_DATA, 'no such folder'),
    ('export', ['{tmp}', '--onnx', '{tmp}/nowhere/x.onnx'], EXIT_DATA,
     'the folder {tmp}/nowhere does not exist'),
    ('matmul', MATMUL + ['--rank', '3'], EXIT_USAGE, 'every one needs at least'),
    ('matmul', MATMUL + ['--rank', '7', '--seed', '-1'], EXIT_USAGE, 'argument --seed'),
    ('matmul', MATMUL + ['--rank', '7', '--json', '{file}/x.json'], EXIT_DATA,
     '--json {file}/x.json'),
    ('paper', ['plan', 'cifar10'], EXIT_USAGE, 'the following arguments are required: --budget'),
    ('paper', ['plan', 'nope', '--budget', 'cpu'], EXIT_USAGE, 'nope'),
    ('paper', ['run', 'cifar10', '--budget', 'smoke', '--out', '{file}/runs'], EXIT_DATA,
     '{file}'),
]


@pytest.fixture(scope='module')
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp('bad')
    cifar = str(root / 'cifar')
    write_fake_cifar(cifar, n_train_per_batch=20, n_test=30)
    ptb = write_corpus(str(root / 'ptb'))
    file = root / 'a_file'
    file.write_text('not a folder')
    return dict(cifar=cifar, ptb=ptb, file=str(file))


@pytest.mark.parametrize('command, args, status, fragment', CASES,
                         ids=['%s %s' % (c[0], ' '.join(c[1])) for c in CASES])
def test_mistake_gives_one_line_and_its_exit_status(command, args, status, fragment, places,
                                                    tmp_path, capsys):
    fill = dict(places, tmp=str(tmp_path))
    logs = tmp_path / 'runs'
    argv = ['--log_dir', str(logs), '--gpu_index', '-1', '--quiet'] if command in TRAINING else []
    if command == 'langmod':
        argv += LM_TINY
    argv += [a.format(**fill) for a in args]
    try:
        code = COMMANDS[command](argv)
    except SystemExit as stop:      # argparse
        code = stop.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == status, err
    # One line says what is wrong; advice may follow, indented (e.g. how to provide data).
    assert lines[0].startswith('error: ') and all(l.startswith('  ') for l in lines[1:]), err
    assert fragment.format(**fill) in lines[0], err
    assert 'Traceback' not in err
    # Nothing half-written: no run folder, no output file.
    assert not logs.exists() or not any(logs.iterdir()), list(logs.iterdir())
    assert not (tmp_path / 'x.onnx').exists()
