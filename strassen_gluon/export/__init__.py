"""Deployment of trained networks: the numpy deployment form of SPN layers (forms), the inference
graph (graph.inference_net), ONNX export (onnx_file.to_onnx), packed 2-bit weights (packing)."""
from .forms import (conv2d_reference, export_conv, export_dense, export_layer,  # noqa: F401
                    export_lstm, export_model, load_exported, save_exported, spn_conv_reference,
                    spn_dense_reference, spn_lstm_reference)
from .graph import inference_net  # noqa: F401
from .onnx_file import check_onnx, deployed_size, require_ternary, run_onnx, to_onnx  # noqa: F401
