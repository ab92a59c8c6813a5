"""Recurrent kinds as registered objects (:class:`KindSpec`), torch-free.

Importing the package registers the built-in kinds (:mod:`seqacts.kinds.builtin`). A new kind
is one :func:`register_kind` call with its facts; see docs/ARCHITECTURE.md, "How to add a kind".
"""

from __future__ import annotations

from . import builtin, keras_kinds
from .registry import (
    ACTIVATION_RANGE,
    KindSpec,
    activation_of,
    base_kind,
    find_kind,
    has_cell_state,
    kind_spec,
    register_kind,
    registered_kinds,
    tanh_bounded_kinds,
    variable_doc,
)

__all__ = [
    "ACTIVATION_RANGE",
    "KindSpec",
    "activation_of",
    "base_kind",
    "builtin",
    "keras_kinds",
    "find_kind",
    "has_cell_state",
    "kind_spec",
    "register_kind",
    "registered_kinds",
    "tanh_bounded_kinds",
    "variable_doc",
]
