"""SPN layers and the whole-model operations on them."""
from .spn import (SPNBlock, SPNConv2D, SPNDense, clip_scales, freeze_ternary, resolve_rank,
                  set_phase, spn_layers)
from .spn_lstm import SPNLSTM

__all__ = ['SPNBlock', 'SPNConv2D', 'SPNDense', 'SPNLSTM', 'clip_scales', 'freeze_ternary',
           'resolve_rank', 'set_phase', 'spn_layers']
