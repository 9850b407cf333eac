"""Converting dense networks into Strassen networks (issue 10).

* strassenize(net, ...): any Gluon network, in place (Conv2D/Dense -> SPNConv2D/SPNDense);
* init_from_dense(layer, ...): one SPN layer from the dense weights it keeps;
* transfer_dense(dense_net, spn_net, ...): a registry SPN model from its trained dense twin;
* transfer_gluoncv('gluoncv:NAME', spn_net, ...): the same from gluoncv's model zoo.
"""
from .initialise import (LayerInit, conv_block_operator, init_from_dense,
                         init_spn_from_dense)
from .strassenize import LAST_LAYER, ConversionWarning, strassenize
from .transfer import (GLUONCV_TWINS, check_dense_twin, dense_twin, gluoncv_name,
                       load_gluoncv, match_layers, transfer_dense, transfer_gluoncv)
from .walk import ConversionError, LayerSpec, TransferError, WeightsUnavailableError

__all__ = ['ConversionError', 'ConversionWarning', 'GLUONCV_TWINS', 'LAST_LAYER', 'LayerInit',
           'LayerSpec', 'TransferError', 'WeightsUnavailableError', 'check_dense_twin',
           'conv_block_operator', 'dense_twin', 'gluoncv_name', 'init_from_dense',
           'init_spn_from_dense', 'load_gluoncv', 'match_layers', 'strassenize',
           'transfer_dense', 'transfer_gluoncv']
