"""Shared enums and small typed settings; imports nothing from the package."""
from enum import IntEnum


class Phase(IntEnum):
    """What an SPN layer computes. The values are the original code's `sp_mode` numbers.

    DENSE      the original dense layer (convolution, fully connected, LSTM) with its own weight
    FULL       the sum-product network in full precision
    TERNARY    W_b and W_c ternary (straight-through gradients): the Strassen layer
    TERNARY_B  only W_b ternary
    TERNARY_C  only W_c ternary
    """
    DENSE = 0
    FULL = 1
    TERNARY = 2
    TERNARY_B = 3
    TERNARY_C = 4

    @property
    def ternary_b(self):
        return self in (Phase.TERNARY, Phase.TERNARY_B)

    @property
    def ternary_c(self):
        return self in (Phase.TERNARY, Phase.TERNARY_C)

    @classmethod
    def parse(cls, value):
        """Accept a Phase, its number or its name (any case)."""
        if isinstance(value, Phase):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError('unknown phase %r; choose one of %s'
                                 % (value, ', '.join(p.name.lower() for p in cls))) from None
        try:
            return cls(int(value))
        except (ValueError, TypeError):
            raise ValueError('unknown phase %r; valid numbers are 0-4' % (value,)) from None
