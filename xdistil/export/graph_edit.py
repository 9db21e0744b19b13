"""Small helpers for editing an onnxruntime `OnnxModel`: read constants, add initializers."""
import numpy as np
from onnx import numpy_helper


def constant(m, name):
    """Value of an initializer or Constant node output named `name`, else None (also for "")."""
    return m.get_constant_value(name) if name else None


def add_initializer(m, name_hint, array) -> str:
    """Add `array` as an initializer under a fresh name made from `name_hint`; return the name."""
    name = m.create_node_name("Constant", name_hint)
    m.add_initializer(numpy_helper.from_array(np.asarray(array), name))
    return name


def int64_vector(m, name_hint, values) -> str:
    return add_initializer(m, name_hint, np.asarray(values, dtype=np.int64))
