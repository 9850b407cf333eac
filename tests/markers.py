"""Skip markers shared by several test modules."""
import pytest

from strassen_gluon.train.precision import bfloat16_support

needs_bfloat16 = pytest.mark.skipif(
    bfloat16_support()[0] != 'fast',
    reason='bfloat16 computes slower than float32 on this CPU or has no kernels: %s'
           % bfloat16_support()[1])
