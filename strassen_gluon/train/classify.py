"""Image classification as a task of the training loop (CIFAR-10 and ImageNet).

Batches are (data, label) NDArrays; each is split across the devices (data parallel), the loss
is the softmax cross-entropy, or the distillation loss with a teacher, and the metrics are
accumulated on the device (one host read per sync, see loop.train_epoch).
"""
from mxnet import autograd, nd
from mxnet.gluon.utils import split_and_load

from .distill import distillation_loss
from .loop import Task, progress_bar


def _hits(logits, labels, k=1):
    """How many labels are among the top-k logits (a device scalar); with k at least the number
    of classes, every label is."""
    k = min(k, logits.shape[1])
    if k == 1:
        return (logits.argmax(axis=1) == labels.astype(logits.dtype)).sum()
    top = nd.topk(logits, axis=1, k=k, ret_typ='indices')
    return (top == labels.astype(logits.dtype).reshape((-1, 1))).sum()


class ClassificationTask(Task):
    """`train_data(global_epoch)` and `eval_data` give (data, label) batches; `topk` lists the
    accuracies that `evaluate` reports (1: 'val_acc' alone, as CIFAR-10; (1, 5): 'top1' and
    'top5', as ImageNet)."""

    def __init__(self, options, ctx, train_data, eval_data, teacher=None, topk=(1,)):
        super().__init__(options)
        self.ctx = list(ctx)
        self._train_data, self.eval_data = train_data, eval_data
        self.teacher = teacher
        self.topk = tuple(topk)
        self.primary_metric = 'val_acc' if self.topk == (1,) else 'top1'

    def train_batches(self, global_epoch):
        if hasattr(self._train_data, 'set_epoch'):
            self._train_data.set_epoch(global_epoch)
        return self._train_data

    def step(self, net, trainer, batch, state):
        data, label = batch
        xs = split_and_load(data, self.ctx, even_split=False)
        ys = split_and_load(label, self.ctx, even_split=False)
        o = self.options
        # The teacher runs outside autograd.record: inference mode (BN running statistics).
        soft = [self.teacher(x) for x in xs] if self.teacher is not None else [None] * len(xs)
        with autograd.record():
            logits = [net(x) for x in xs]
            losses = [distillation_loss(nd, z, t, y, o.dist_lambda, o.dist_temp)
                      for z, t, y in zip(logits, soft, ys)]
        autograd.backward(losses)
        trainer.step(data.shape[0])
        home = self.ctx[0]
        loss = sum(l.sum().as_in_context(home) for l in losses)
        correct = sum(_hits(z, y).as_in_context(home) for z, y in zip(logits, ys))
        return state, {'loss': loss, 'correct': correct}, data.shape[0]

    def train_metrics(self, totals, count):
        count = max(count, 1)
        return {'train_loss': totals['loss'] / count, 'train_acc': totals['correct'] / count}

    def evaluate(self, net):
        return evaluate(net, self.eval_data, self.ctx, self.topk, self.options.progress)


def evaluate(net, batches, ctx, topk=(1,), progress=False):
    """Accuracies of `net` (inference mode) over `batches`, one host read at the end:
    {'val_acc'} for topk (1,), else {'top1', 'top5', ...}; 'eval_images' says how many images
    were scored. `progress`: a bar over the batches."""
    ctx = list(ctx)
    bar = progress_bar(len(batches) if hasattr(batches, '__len__') else None, 'evaluate',
                       progress)
    correct = {k: nd.zeros((1,), ctx=ctx[0]) for k in topk}
    images = 0
    for data, label in batches:
        for x, y in zip(split_and_load(data, ctx, even_split=False),
                        split_and_load(label, ctx, even_split=False)):
            z = net(x)
            for k in topk:
                correct[k] += _hits(z, y, k).as_in_context(ctx[0])
        images += data.shape[0]
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    values = {k: float(c.asscalar()) / max(images, 1) for k, c in correct.items()}  # SYNC POINT
    if tuple(topk) == (1,):
        return {'val_acc': values[1], 'eval_images': images}
    return dict({'top%d' % k: v for k, v in values.items()}, eval_images=images)
