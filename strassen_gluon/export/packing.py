"""W_b and W_c at 2 bits per weight: four ternary values per byte.

Code of a value v in {-1, 0, 1}: v mod 3 (0 -> 0, 1 -> 1, -1 -> 2); value i of a byte sits in
bits 2i..2i+1 (little end first), the flattened array (C order) padded with zeros to a
multiple of 4. The shape is stored beside the bytes.
"""
import numpy as np

PACKED_SUFFIX = '.packed2'
SHAPE_SUFFIX = '.shape'


def pack_ternary(levels):
    """uint8 bytes of an integer array holding only -1, 0, 1 (ValueError otherwise)."""
    levels = np.asarray(levels)
    if not np.all(np.isin(levels, (-1, 0, 1))):
        raise ValueError('only arrays of -1, 0, 1 pack to 2 bits')
    codes = np.mod(levels.astype(np.int16).ravel(), 3).astype(np.uint8)
    codes = np.concatenate([codes, np.zeros(-codes.size % 4, np.uint8)]).reshape(-1, 4)
    return (codes[:, 0] | codes[:, 1] << 2 | codes[:, 2] << 4 | codes[:, 3] << 6).astype(np.uint8)


def unpack_ternary(packed, shape):
    """The int8 array of `shape` that pack_ternary packed into `packed`."""
    packed = np.asarray(packed, np.uint8)
    codes = np.stack([(packed >> shift) & 3 for shift in (0, 2, 4, 6)], axis=1).ravel()
    count = int(np.prod(shape, dtype=np.int64))
    values = codes[:count].astype(np.int8)
    values[values == 2] = -1
    return values.reshape(tuple(int(v) for v in shape))


def is_ternary_field(key, value):
    """W_b and W_c of an exported form (key '.../wb' or '.../wc', int8)."""
    return key.rsplit('/', 1)[-1] in ('wb', 'wc') and np.asarray(value).dtype == np.int8


def pack_arrays(flat):
    """{key: array} with every W_b / W_c replaced by key.packed2 (bytes) and key.shape."""
    out = {}
    for key, value in flat.items():
        if is_ternary_field(key, value):
            out[key + PACKED_SUFFIX] = pack_ternary(value)
            out[key + SHAPE_SUFFIX] = np.asarray(np.shape(value), np.int64)
        else:
            out[key] = value
    return out


def unpack_arrays(flat):
    """The inverse of pack_arrays (arrays without a packed field pass through)."""
    out = {}
    for key, value in flat.items():
        if key.endswith(PACKED_SUFFIX):
            base = key[:-len(PACKED_SUFFIX)]
            out[base] = unpack_ternary(value, flat[base + SHAPE_SUFFIX])
        elif not (key.endswith(SHAPE_SUFFIX) and key[:-len(SHAPE_SUFFIX)] + PACKED_SUFFIX in flat):
            out[key] = value
    return out
