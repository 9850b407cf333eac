"""Data parallelism over machines through MXNet's distributed kvstore (``--kvstore dist_sync``).

Every worker reads its own part of the training data; gradients are summed over all workers and
devices through the kvstore under the parameters' names and the optimizer runs on every worker
(:class:`DistSyncTrainer`), so the workers keep identical weights; batch-norm running statistics
are averaged over workers after every epoch (:class:`WorkerGroup`). :func:`launch` runs MXNet's
own launcher; :func:`worker_group` and :func:`worker_config` give a worker its group and its run
folder ``<job folder>/worker<k>``.
"""
import dataclasses
import os
import sys

import mxnet as mx
from mxnet import gluon

from ..errors import UsageError
from ..gluon_compat import ReducingTrainer, support_dmlc_tracker
from ..layers import SPNBlock



class WorkerGroup:
    """The workers of a ``dist_sync`` job, as reached through one distributed kvstore.

    Values are summed over workers under string keys, each initialised once (kvstore.init is
    collective: every worker runs the same code, so they initialise the same keys in the same
    order). Without an optimizer on the servers, a dist_sync server stores the sum of the
    values all workers pushed for a key, and a pull returns it.
    """

    def __init__(self, kvstore):
        self.kv = kvstore
        self.rank, self.size = kvstore.rank, kvstore.num_workers
        self._keys = set()

    def allreduce(self, key, arrays, priority=0):
        """Replace every array of `arrays` (one per device) by the sum over devices and workers."""
        if key not in self._keys:
            self.kv.init(key, arrays[0])
            self._keys.add(key)
        self.kv.push(key, arrays, priority=priority)
        self.kv.pull(key, out=arrays, priority=priority)

    def broadcast_parameters(self, net):
        """Give every worker worker 0's parameters (all of them, running statistics included)."""
        for name, param in sorted(net.collect_params().items()):
            key = 'init/' + name
            self.kv.init(key, param.data())  # the servers keep worker 0's value
            self.kv.pull(key, out=param.list_data())
        mx.nd.waitall()

    def average_batchnorm_statistics(self, net):
        """Average the BN running mean and variance over devices and workers (once per epoch)."""
        for param in running_statistics(net):
            arrays = param.list_data()
            self.allreduce('bn/' + param.name, arrays)
            for a in arrays:
                a /= self.size * len(arrays)


def running_statistics(net):
    """The batch norms' running means and variances: of nn.BatchNorm blocks and of the batch
    norm inside SPN layers, found by block type."""
    found = []

    def visit(block):
        if isinstance(block, gluon.nn.BatchNorm):
            found.extend([block.running_mean, block.running_var])
        elif isinstance(block, SPNBlock):
            found.extend(block.running_stat_params())
    net.apply(visit)
    return found


class DistSyncTrainer(ReducingTrainer):
    """A gluon Trainer whose gradients are summed over all devices and workers of a WorkerGroup.

    Gluon's own dist_sync support keys the kvstore by position in the trainer's parameter list
    and initialises the keys when a trainer is built; the stages build a new trainer over another
    list, which would reuse keys with other shapes. Here the keys are the parameter names, and
    the update runs locally on the summed gradients (every worker computes the same update).
    `step(batch_size)` takes this worker's batch; the summed gradient covers all workers'.
    """

    def __init__(self, params, optimizer, optimizer_params, group):
        def reduce(params):
            for i, param in enumerate(params):
                if param.grad_req != 'null':
                    group.allreduce('grad/' + param.name, param.list_grad(), priority=-i)
        super().__init__(params, optimizer, optimizer_params, reduce, batch_scale=group.size)


def launch(argv):
    """Run MXNet's launcher (``mxnet/tools/launch.py``, shipped in the mxnet wheel) with `argv`.

    The launcher's tracker needs a shim on Python >= 3.9 (gluon_compat.support_dmlc_tracker).
    Put ``--`` before the command to launch.
    """
    import runpy
    support_dmlc_tracker()
    script = os.path.join(os.path.dirname(mx.__file__), 'tools', 'launch.py')
    if not os.path.isfile(script):
        raise UsageError('this mxnet installation has no launcher at %s' % script)
    saved = sys.argv
    sys.argv = [script] + list(argv)
    try:
        runpy.run_path(script, run_name='__main__')
    finally:
        sys.argv = saved
    return 0


def worker_group(kvstore):
    """The WorkerGroup of a dist_sync run (None otherwise); needs MXNet's launcher."""
    if kvstore != 'dist_sync':
        return None
    if 'DMLC_ROLE' not in os.environ:
        raise UsageError('--kvstore dist_sync runs under MXNet\'s launcher, e.g.\n  python -m '
                         'strassen_gluon.imagenet launch -n 2 -s 1 --launcher local -- python -m '
                         'strassen_gluon.imagenet --kvstore dist_sync --run_name JOB ...')
    return WorkerGroup(mx.kv.create('dist_sync'))


def worker_config(config, rank):
    """The configuration of worker `rank` of a dist_sync job: its run folder is
    <job folder>/worker<rank>, where the job folder is --resume or <log_dir>/<run_name>."""
    if config.resume == 'latest':
        raise UsageError('--kvstore dist_sync: give the job folder to --resume')
    if config.resume:
        return dataclasses.replace(config, resume=os.path.join(config.resume, 'worker%d' % rank))
    if not config.run_name:
        raise UsageError('--kvstore dist_sync needs --run_name (every worker must find the '
                         'same job folder)')
    return dataclasses.replace(config, log_dir=os.path.join(config.log_dir, config.run_name),
                               run_name='worker%d' % rank)
