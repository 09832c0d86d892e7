"""``yolact_fast.reference`` is :mod:`yolact_fast.ops.reference`, the pure-PyTorch twins of
the ops: importing either name gives the same module object."""

import sys

from .ops import reference

sys.modules[__name__] = reference
