"""The one command-line convention (strassen_gluon.cli) and the registry's initialisers."""
import argparse
import dataclasses
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from langmod import train as lm_command
from strassen_gluon import cifar10, cli, imagenet
from strassen_gluon.config import check_options, option, option_fields
from strassen_gluon.errors import (EXIT_DATA, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_USAGE,
                                   DataError, Diverged, Interrupted, RunFolderError,
                                   UsageError)
from strassen_gluon.models import get_model
from strassen_gluon.train import driver

NO_GPU = mx.context.num_gpus() == 0
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_devices():
    assert cli.contexts('-1') == [mx.cpu()] and cli.contexts('') == [mx.cpu()]
    said = []
    if NO_GPU:
        # The default falls back to the CPU and says so; a GPU asked for is an error.
        assert cli.contexts(None, say=said.append) == [mx.cpu()]
        assert said == ['no GPU found: training on the CPU']
        with pytest.raises(UsageError, match='GPU 0 requested.*no GPU'):
            cli.contexts('0')
        with pytest.raises(UsageError, match='GPU 0,1 requested'):
            cli.contexts('0,1')
    for bad in ('x', '-2', '0,0', '1,-1'):
        with pytest.raises(UsageError):
            cli.contexts(bad)


@pytest.mark.parametrize('spelling', ['--gpu_index', '--gpus', '--gpu_idx'])
def test_every_command_spells_devices_alike(spelling):
    configs = [cifar10.parse_args([spelling, '-1'])[0],
               imagenet.parse_args([spelling, '-1'])[0],
               lm_command.parse_args([spelling, '-1'])[0]]
    assert [c.devices for c in configs] == ['-1'] * 3
    for parse in (cifar10.parse_args, imagenet.parse_args, lm_command.parse_args):
        config, explicit = parse(['--resume', '--seed', '5', '--quiet', '--log_dir', 'x',
                                  '--run_name', 'y'])
        assert (config.resume, config.seed, config.quiet, config.log_dir, config.run_name) == \
            ('latest', 5, True, 'x', 'y')
        assert explicit == {'resume', 'seed', 'quiet', 'log_dir', 'run_name'}


def test_per_stage_lists_are_checked_when_parsed():
    parse = cli.per_stage(float, 4)
    assert parse('2') == 2.0 and parse('1,1,2,2') == [1.0, 1.0, 2.0, 2.0]
    for bad in ('1,2', '1,2,3,4,5', 'a'):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)
    with pytest.raises(SystemExit):
        imagenet.parse_args(['--out_patch', '1,2,1,2'])   # ImageNet has 5 stages
    assert imagenet.parse_args(['--out_patch', '1,2,1,2,1'])[0].out_patch == [1, 2, 1, 2, 1]


@dataclasses.dataclass
class _Toy:
    a: int = option(1, 'an integer', low=0)
    b: bool = option(False, 'a switch')
    c: str = option('x', 'a word', choices=('x', 'y', 'preset'))
    d: bool = option(True, 'on unless --no_d')


def test_explicit_options_include_values_equal_to_the_default():
    parser = cli.build_parser(_Toy, 'toy', 'a toy command')
    config, explicit = cli.parse(parser, _Toy, ['--a', '1', '--b', '--no_d'])
    assert (config.a, config.b, config.c, config.d) == (1, True, 'x', False)
    assert explicit == {'a', 'b', 'd'}
    # A preset fills only what the user did not write.
    config, explicit = cli.parse(parser, _Toy, ['--a', '3'])
    driver.apply_presets(config, {'a': 5, 'c': 'preset'}, explicit)
    assert (config.a, config.c) == (3, 'preset')


def test_ranges_are_checked_for_python_callers_too():
    check_options(_Toy(a=0))
    for bad, message in ((_Toy(a=-1), '--a -1: must be >= 0'),
                         (_Toy(c='z'), '--c z: choose one of x, y, preset')):
        with pytest.raises(UsageError, match=message):
            check_options(bad)


@pytest.mark.parametrize('command', [cifar10, imagenet, lm_command])
def test_parsers_are_derived_from_the_configuration(command):
    """Every configuration field is an option with the field's default: one source."""
    config_type = {cifar10: cifar10.CifarConfig, imagenet: imagenet.ImageNetConfig,
                   lm_command: lm_command.LMConfig}[command]
    config, explicit = command.parse_args([])
    assert explicit == set() and config == config_type()
    dests = {a.dest for a in command.build_parser()._actions}
    assert {f.name for f in option_fields(config_type)} <= dests


def test_library_errors_become_exit_statuses(capsys):
    def fail(error):
        raise error
    assert cli.run_command(lambda: None) == 0
    for error, status in ((DataError('no data in /x'), EXIT_DATA),
                          (RunFolderError('/x/latest.json'), EXIT_DATA),
                          (UsageError('--model'), EXIT_USAGE),
                          (Diverged('nan'), EXIT_DIVERGED),
                          (Interrupted('resume with ...'), EXIT_INTERRUPTED),
                          (KeyboardInterrupt(), EXIT_INTERRUPTED)):
        assert cli.run_command(fail, error) == status
        err = capsys.readouterr().err
        assert 'Traceback' not in err and (str(error) in err or status == EXIT_INTERRUPTED)
    with pytest.raises(ZeroDivisionError):      # a bug stays a traceback
        cli.run_command(lambda: 1 / 0)


CIFAR_INIT = mx.init.Xavier(rnd_type='uniform', factor_type='avg', magnitude=2)
IMAGENET_INIT = mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2)

DRAWS = """
import sys
import mxnet as mx, numpy as np
from strassen_gluon.models import get_model
x = mx.nd.ones((2, 3, 32, 32))
for explicit in (True, False):
    mx.random.seed(7)
    net = get_model(sys.argv[1])
    if explicit:
        net.initialize(mx.init.Xavier(rnd_type='uniform', factor_type='avg', magnitude=2))
    else:
        net.initialize()
    net(x)
    np.savez(sys.argv[2] + str(int(explicit)),
             **{k[len(net.prefix):]: p.data().asnumpy() for k, p in net.collect_params().items()})
"""


@pytest.mark.parametrize('name, init', [('st_resnet20', CIFAR_INIT), ('vgg7', CIFAR_INIT),
                                        ('st_resnet18', IMAGENET_INIT),
                                        ('resnet18', IMAGENET_INIT)])
def test_models_own_their_initialisers(name, init):
    """Every weight without an initialiser of its own gets the model's."""
    net = get_model(name)
    weights = [p for p in net.collect_params().values() if p.name.endswith('weight')]
    assert weights and all(p.init is not None and p.init.dumps() == init.dumps()
                           for p in weights)
    # Parameters with an initialiser of their own keep it (ã starts at one, batch norms as
    # Gluon sets them).
    inits = {p.name.rsplit('_', 1)[-1]: p.init for p in net.collect_params().values()
             if not p.name.endswith('weight')}
    assert inits.get('scale', 'ones') == 'ones' and inits.get('gamma', 'ones') == 'ones'


def test_get_model_initialize_draws_what_the_commands_drew(tmp_path):
    """get_model(name).initialize() gives the same numbers as an explicit Xavier (run on the
    serial engine: the threaded one does not order the random draws of a loaded machine)."""
    out = str(tmp_path / 'draws')
    subprocess.run([sys.executable, '-c', DRAWS, 'vgg7', out], check=True, timeout=120,
                   cwd=REPO, env=dict(os.environ, MXNET_ENGINE_TYPE='NaiveEngine',
                                      PYTHONPATH=REPO))
    explicit, implicit = np.load(out + '1.npz'), np.load(out + '0.npz')
    assert sorted(explicit.files) == sorted(implicit.files)
    for key in explicit.files:
        np.testing.assert_array_equal(explicit[key], implicit[key], err_msg=key)
