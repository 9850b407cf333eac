"""ONNX export of the deployed form, with W_b and W_c stored so that a reader sees {-1, 0, 1}.

to_onnx(net, path, input_shape) writes inference_net(net, fold_scales=False): per SPN layer
Conv(x, W_b) -> Mul(scale) -> Add(shift) -> Conv / ConvTranspose(W_c) -> [Mul(out_scale)] ->
Add(out_bias), with standard operators only. Every W_b and W_c is an int8 initialiser (named
``<layer>_ternary_wb`` / ``<layer>_ternary_wc``, values exactly -1, 0, 1) followed by a Cast to
float; every other initialiser is float32. So the multiplications of the file are the Mul
nodes (one per hidden channel and position) and the full-precision layers; the ternary
convolutions only add and subtract.

Opset: MXNet 1.9.1's exporter (mx.onnx.export_model) takes no opset argument; it stamps the
model with onnx.defs.onnx_opset_version() (21 with onnx 1.16.2) and translates each operator
with its newest translation (written for opsets 12-13). The operators it writes (Conv,
ConvTranspose, Mul, Add, Relu, Gemm, pooling, Cast; Pad and Slice for a p >= 2 layer whose
blocks do not tile the fixed map size) mean the same in opset 21; onnx.checker's full check
(with shape inference) passes on the result, and onnxruntime 1.32 runs it. `opset` (e.g. 17)
declares an older opset for the same nodes (restamp_opset; checked the same way).

A network whose SPN layers are not all in phase TERNARY is refused (PhaseError): its W_b/W_c are
not ternary yet, so there is no deployed form to write; train it through the ternary phases
first. Networks without SPN layers (resnet20, ...) export with their batch norms folded.
Recurrent networks (the language model's LSTM) are refused (UsageError,
:func:`require_feedforward`): the graph above is that of feed-forward image networks, and ONNX's
LSTM operator takes dense gate matrices, which would hide the ternary W_b/W_c; their deployment
form is the numpy one (``export_model`` / ``save_exported``, run by ``spn_lstm_reference``).
"""
import os
import tempfile

import mxnet as mx
import numpy as np
from mxnet import nd
from mxnet.gluon import rnn

from ..config import Phase
from ..counting import count_model
from ..errors import PhaseError, UsageError
from ..files import atomic_path
from ..layers.spn import spn_layers
from ..layers.spn_lstm import SPNLSTM
from .graph import TERNARY_TAG, context_of, inference_net

RECURRENT = (SPNLSTM, rnn.LSTM, rnn.GRU, rnn.RNN, rnn.HybridRecurrentCell)
# onnx and onnxruntime are imported where used, so that the rest of strassen_gluon.export (the
# numpy form, the inference graph) works without them.


def require_feedforward(net):
    """UsageError when `net` has a recurrent layer (an SPN LSTM or a Gluon RNN): to_onnx writes
    feed-forward image networks only (module docstring)."""
    found = []
    net.apply(lambda block: found.append(block) if isinstance(block, RECURRENT) else None)
    if found:
        raise UsageError('%s has a recurrent layer (%s): ONNX export covers feed-forward image '
                         'networks only; its deployment form is the numpy one (--packed '
                         'FILE.npz, or strassen_gluon.export.save_exported)'
                         % (net.name, type(found[0]).__name__))


def require_ternary(net):
    """PhaseError naming the SPN layers of `net` that are not in phase TERNARY (if any)."""
    layers = spn_layers(net)
    wrong = [layer for layer in layers if layer.phase != Phase.TERNARY]
    if wrong:
        phases = sorted({layer.phase.name for layer in wrong})
        raise PhaseError(
            '%d of %d SPN layers are in phase %s, not TERNARY (first: %s): W_b and W_c are not '
            'ternary yet, so the network has no deployed form; export it after its ternary '
            'phases' % (len(wrong), len(layers), '/'.join(phases), wrong[0].name))


def deployed_size(net, input_shape):
    """The deployed model's size by strassen_gluon.counting: 2 bits per ternary weight, 32 per other
    value. Returns {'bits', 'megabytes', 'mults', 'adds'} (operations for one input of
    `input_shape` with batch 1)."""
    total = count_model(net, input_shape=(1,) + tuple(input_shape[1:]))['total']
    return {'bits': total['bits'], 'megabytes': total['bits'] / 8e6,
            'mults': total['mults'], 'adds': total['adds']}


def _mxnet_to_onnx(deployed, input_shape, path, folder, dynamic_batch):
    """HybridBlock.export (symbol + params) of the hybridized `deployed`, then mx.onnx."""
    deployed(nd.zeros(input_shape, ctx=context_of(deployed)))  # builds the cached graph to export
    prefix = os.path.join(folder, 'deployed')
    deployed.export(prefix)
    mx.onnx.export_model(prefix + '-symbol.json', prefix + '-0000.params', [tuple(input_shape)],
                         [np.float32], path, dynamic=dynamic_batch,
                         dynamic_input_shapes=[(None,) + tuple(input_shape[1:])])


def store_ternary_as_int8(model):
    """In place: each float initialiser named *ternary_* becomes int8 + a Cast node to float
    (ValueError if one holds anything but -1, 0, 1). Returns {name: number of values}."""
    from onnx import TensorProto, helper, numpy_helper
    graph, ternary = model.graph, {}
    casts = []
    for index, init in enumerate(graph.initializer):
        if TERNARY_TAG not in init.name:
            continue
        values = numpy_helper.to_array(init)
        if not np.all(np.isin(values, (-1, 0, 1))):
            raise ValueError('initialiser %s is not ternary' % init.name)
        graph.initializer[index].CopyFrom(numpy_helper.from_array(values.astype(np.int8),
                                                                  init.name))
        as_float = init.name + '_float'
        casts.append(helper.make_node('Cast', [init.name], [as_float], to=TensorProto.FLOAT,
                                      name=init.name + '_cast'))
        for node in graph.node:
            node.input[:] = [as_float if name == init.name else name for name in node.input]
        ternary[init.name] = int(values.size)
    # Casts first keeps the node list in topological order.
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return ternary


def drop_initializers_from_inputs(model):
    """MXNet's exporter lists every initialiser as a graph input too, which would make them
    overridable inputs and stop onnxruntime folding constants."""
    constants = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in constants]
    del model.graph.input[:]
    model.graph.input.extend(inputs)


def restamp_opset(model, opset):
    """Declare opset `opset` (13 up to what the exporter stamped). The exporter's translations
    are written for opset 13, so an older stamp is the honest one for the same nodes; the
    checker then validates every node against it. onnx.version_converter (onnx 1.16.2) cannot
    do this: it has no downward adapter for Cast from opset 21."""
    stamped = model.opset_import[0].version
    if not 13 <= opset <= stamped:
        raise ValueError('opset %d: the exported nodes are valid from opset 13 to %d'
                         % (opset, stamped))
    for entry in model.opset_import:
        if entry.domain in ('', 'ai.onnx'):
            entry.version = opset


def to_onnx(net, path, input_shape, opset=None, dynamic_batch=True):
    """Write the deployed form of the trained `net` to the ONNX file `path` for inputs of
    `input_shape` (N, C, H, W) (see the module docstring); with dynamic_batch the file takes any
    batch size N. Raises PhaseError for a network not in phase TERNARY, UsageError for a
    recurrent one.

    Returns {'path', 'opset', 'ternary_initializers': {name: size}, 'ternary_values',
    'size': deployed_size(...), 'file_bytes'}.
    """
    import onnx
    require_feedforward(net)
    require_ternary(net)
    input_shape = tuple(int(v) for v in input_shape)
    deployed = inference_net(net, fold_scales=False, hybridize=True,
                             input_shape=input_shape)
    with tempfile.TemporaryDirectory() as folder:
        raw = os.path.join(folder, 'mxnet.onnx')
        _mxnet_to_onnx(deployed, input_shape, raw, folder, dynamic_batch)
        model = onnx.load(raw)
    drop_initializers_from_inputs(model)
    ternary = store_ternary_as_int8(model)
    if opset is not None:
        restamp_opset(model, opset)
    model.producer_name = 'strassen_gluon.export'
    model.doc_string = ('Deployed form of %s: W_b and W_c are the int8 initialisers *%s*, each '
                        'holding only -1, 0, 1; scales are separate Mul nodes.'
                        % (net.name, TERNARY_TAG))
    onnx.checker.check_model(model, full_check=True)
    with atomic_path(path) as tmp:
        onnx.save(model, tmp)
    return {'path': path, 'opset': model.opset_import[0].version,
            'ternary_initializers': ternary, 'ternary_values': sum(ternary.values()),
            'size': deployed_size(net, input_shape), 'file_bytes': os.path.getsize(path)}


def run_onnx(path, x):
    """Outputs of the ONNX file `path` for the numpy batch `x` in onnxruntime (CPU)."""
    session = onnx_session(path)
    return session.run(None, {session.get_inputs()[0].name: np.asarray(x, np.float32)})[0]


def onnx_session(path, threads=None):
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # no per-initialiser warnings
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def check_onnx(net, path, x):
    """Largest difference between the ONNX file in onnxruntime and `net` in MXNet (inference
    mode) on the batch `x` (NDArray): {'max_abs', 'relative'} (relative to max |MXNet output|)."""
    expected = net(x).asnumpy()
    got = run_onnx(path, x.asnumpy())
    max_abs = float(np.abs(got - expected).max())
    return {'max_abs': max_abs, 'relative': max_abs / max(float(np.abs(expected).max()), 1e-30)}
