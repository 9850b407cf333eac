"""strassen_gluon: StrassenNets (Tschannen, Khanna, Anandkumar, ICML 2018) in MXNet Gluon."""
from .config import Phase
from .layers import (SPNConv2D, SPNDense, SPNLSTM, clip_scales, freeze_ternary, set_phase,
                     spn_layers)

__version__ = '0.1.0'
