"""Every name the recorded schema uses is declared once in ``seqacts.schema``; the kinds'
facts come from the registry, and the tables derived from it are what they always were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import seqacts
from seqacts import inputs, schema
from seqacts.analysis import core
from seqacts.capture import assembly
from seqacts.errors import CLIError, KindError
from seqacts.kinds import KindSpec, builtin, find_kind, kind_spec, register_kind


class Mixed(nn.Module):
    """Every PyTorch kind, so a recording holds every built-in variable."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.gru = nn.GRU(4, 4, batch_first=True)
        self.rnn = nn.RNN(4, 4, batch_first=True, nonlinearity="relu")
        self.cell = nn.LSTMCell(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        out, _ = self.gru(out)
        out, _ = self.rnn(out)
        h = self.cell(out[:, 0])
        self.cell(out[:2, 1])  # another batch size: unaligned rows, so call/call_row appear
        return h[0]


def test_every_name_of_a_recording_is_a_schema_name() -> None:
    torch.manual_seed(0)
    with pytest.warns(seqacts.RecordingWarning):
        ds = seqacts.extract(Mixed(), torch.randn(3, 5, 3), internals=True)
    assert {"call", "call_row"} <= set(ds.coords)
    names = {str(n) for n in (*ds.dims, *ds.variables)}
    assert names <= schema.SCHEMA_NAMES, names - schema.SCHEMA_NAMES


def test_state_names_are_derived_from_the_schema() -> None:
    assert assembly.STATE_VARS is schema.STATE_VARS
    assert assembly.CELL_STATE_VARS is schema.CELL_STATE_VARS
    assert core.LSTM_STATE_VARS is schema.CELL_STATE_VARS
    assert inputs.RESERVED is schema.SCHEMA_NAMES
    assert {"nonfinite", "call", "call_row", "length"} <= inputs.RESERVED


@pytest.mark.parametrize("name", ["nonfinite", "call", "call_row", "c_n", "preactivation"])
def test_a_coords_label_named_like_the_schema_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(f"{name},anomaly\n1,0\n0,1\n")
    with pytest.raises(CLIError, match=f"'{name}'.*cannot name a label"):
        inputs.read_coords(str(path), 2)


def test_pytorch_tables_are_the_registry_s_facts() -> None:
    assert schema.KINDS == ("LSTM", "GRU", "RNN_TANH", "RNN_RELU", "LSTMCell", "GRUCell", "RNNCell")
    assert schema.INTERNALS["LSTM"] == ("c", "input_gate", "forget_gate", "cell_gate", "output_gate")
    assert schema.gate_order("GRU") == ("reset_gate", "update_gate", "new_gate")
    assert schema.base_kind("RNNCell", "relu") == "RNN_RELU"
    assert schema.base_kind("LSTMCell") == "LSTM"
    assert schema.TANH_BOUNDED_KINDS == {"LSTM", "LSTMCell", "GRU", "GRUCell", "RNN_TANH"}
    assert schema.INTERNAL_RANGE["cell_gate"] == (-1.0, 1.0)
    assert kind_spec("LSTMCell").has_cell_state and not kind_spec("GRU").has_cell_state


def test_a_front_end_registers_torch_free_facts() -> None:
    """A kind that is no torch module (a Keras GRU with reset_after) is one KindSpec."""
    spec = KindSpec(
        name="test.KerasGRU", states=("h",), internals=("reset_gate", "update_gate", "new_gate"),
        gates=("update_gate", "reset_gate", "new_gate"),
        activations={"reset_gate": "sigmoid", "update_gate": "sigmoid", "new_gate": "tanh"},
        docs={"new_gate": ("new gate", "n_t = tanh(W_n x_t + b_n + r_t * (U_n h_{t-1} + b_rn))")},
        tanh_bounded=True,
    )
    assert register_kind(spec) is spec and register_kind(spec) is spec  # idempotent
    assert find_kind("test.KerasGRU") is spec and spec.gates[0] == "update_gate"
    assert spec.range_of("reset_gate") == (0.0, 1.0) and spec.range_of("h") is None
    assert "test.KerasGRU" in seqacts.kinds.tanh_bounded_kinds()
    with pytest.raises(KindError, match="already registered"):
        register_kind(KindSpec(name="test.KerasGRU"))
    with pytest.raises(KindError, match="'new_gate' with activation 'sigmoid'"):
        register_kind(KindSpec(name="test.Bad", internals=("new_gate",),
                               activations={"new_gate": "sigmoid"}))
    with pytest.raises(KindError, match="states must be"):
        KindSpec(name="test.Bad", states=("h", "c", "n"))
    with pytest.raises(KindError, match="unknown kind 'nope'"):
        kind_spec("nope")


def test_builtin_kinds_are_registered_once() -> None:
    assert [k.name for k in builtin.PYTORCH_KINDS] == list(schema.KINDS)
    assert all(find_kind(k.name) is k for k in (*builtin.PYTORCH_KINDS, *builtin.USER_CELL_KINDS))
    assert np.all([k.one_step for k in builtin.CELL_KINDS])
