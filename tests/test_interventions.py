"""Edited forwards against the float64 reference with the same edit applied in its step loop.

Every kind, bidirectional (edits on the backward direction), packed sequences in unsorted
order, multi-layer stacks, time slices and masks, ``state="c"``, cell loops and patches:
outputs within 1e-9 in float64; steps before the first edited step and layers below the edited
one bit-identical to the unedited run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import reference_cell, reference_stack
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqacts
from seqacts.schema import CELL_KERNELS, STACK_KERNELS

N, T, N_IN, H = 3, 7, 3, 4
TOL = 1e-9

STACKS = {
    "RNN_TANH": lambda **kw: nn.RNN(N_IN, H, nonlinearity="tanh", **kw),
    "RNN_RELU": lambda **kw: nn.RNN(N_IN, H, nonlinearity="relu", **kw),
    "GRU": lambda **kw: nn.GRU(N_IN, H, **kw),
    "LSTM": lambda **kw: nn.LSTM(N_IN, H, **kw),
    "LSTM_proj": lambda **kw: nn.LSTM(N_IN, H, proj_size=2, **kw),
}


def make_stack(kind: str, bidirectional: bool = False, batch_first: bool = True,
               layers: int = 2) -> nn.RNNBase:  # fmt: skip
    torch.manual_seed(0)
    module = STACKS[kind](num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    return module.double().eval()


def inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(N, T, N_IN, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def mask_of(time, n: int = N, steps: int = T) -> np.ndarray:
    """The (sample, time) steps an edit's ``time=`` selects, for the reference."""
    if time is None:
        return np.ones((n, steps), dtype=bool)
    m = np.zeros((n, steps), dtype=bool)
    if isinstance(time, (int, slice)):
        m[:, time] = True
        return m
    return np.broadcast_to(np.asarray(time, dtype=bool), (n, steps)).copy()


def by_hand(specs):
    """A reference ``edit`` callback: specs are (layer, direction, state, units, values, time)."""

    def edit(k, d, s, t):
        out = []
        for layer, direction, state, units, values, time in specs:
            if layer == k and direction == d and mask_of(time)[s, t]:
                v = np.broadcast_to(np.asarray(values, dtype=np.float64), (N, len(units)))[s]
                out.append((state, units, v))
        return out

    return edit


def top_output(module: nn.RNNBase, y) -> np.ndarray:
    out = y[0]
    if isinstance(out, nn.utils.rnn.PackedSequence):
        out, _ = pad_packed_sequence(out, batch_first=True, padding_value=float("nan"))
    elif not module.batch_first:
        out = out.transpose(0, 1)
    return out.detach().numpy()


def reference_top(module, x, lengths=None, specs=()):
    layers = reference_stack(module, x.numpy(), lengths, edit=by_hand(specs))
    top = layers[-1]["h"]  # (N, D, T, H)
    return np.concatenate([top[:, d] for d in range(top.shape[1])], axis=-1), layers


@pytest.mark.parametrize("kind", list(STACKS))
@pytest.mark.parametrize("bidirectional,packed", [(False, False), (True, False), (False, True),
                                                  (True, True)])  # fmt: skip
def test_stack_edits_match_reference(kind, bidirectional, packed):
    module = make_stack(kind, bidirectional)
    x = inputs()
    lengths = np.array([5, 7, 3])
    direction = "backward" if bidirectional else "forward"
    width = module.proj_size or H
    units, value = [0, width - 1], [0.5, -1.5]
    edit = seqacts.ablate("l0", units, value=value, time=slice(1, 5), direction=direction)
    arg = pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False) \
        if packed else x  # fmt: skip
    with torch.no_grad():
        plain = module(arg)
        with seqacts.intervene(module, [edit]):
            edited = module(arg)
    expected, layers = reference_top(
        module, x, lengths if packed else None,
        [(0, int(bidirectional), "h", units, value, slice(1, 5))],
    )
    got = top_output(module, edited)
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0, equal_nan=True)
    # final states: h_n of the top layer, per direction
    state = edited[1][0] if isinstance(edited[1], tuple) else edited[1]
    h_n = state.numpy()[-(2 if bidirectional else 1):]
    np.testing.assert_allclose(h_n, layers[-1]["h_n"].transpose(1, 0, 2), atol=TOL, rtol=0)
    assert not np.allclose(got, top_output(module, plain), equal_nan=True)


@pytest.mark.parametrize("kind", ["LSTM", "LSTM_proj"])
def test_cell_state_edits_recompute_h(kind):
    module = make_stack(kind, bidirectional=True)
    x = inputs()
    per_sample = np.zeros((N, T), dtype=bool)
    per_sample[0, 2] = per_sample[1, [3, 5]] = per_sample[2, 6] = True
    edits = [
        seqacts.ablate("l0", [1, 3], state="c", value=2.0, time=per_sample),
        seqacts.ablate("l1", 2, state="c", value=-1.0, time=4, direction="backward"),
    ]
    with torch.no_grad(), seqacts.intervene(module, edits):
        y = module(x)
    expected, layers = reference_top(module, x, None, [
        (0, 0, "c", [1, 3], 2.0, per_sample),
        (1, 1, "c", [2], -1.0, 4),
    ])
    np.testing.assert_allclose(top_output(module, y), expected, atol=TOL, rtol=0)
    np.testing.assert_allclose(y[1][1].numpy()[2:], layers[1]["c_n"].transpose(1, 0, 2), atol=TOL,
                               rtol=0)  # fmt: skip
    ds = seqacts.extract(module, x, edits=edits, internals=["c"])
    assert ds.c.sel(layer="l0", direction="forward", unit=[1, 3]).values[0, 2].tolist() == [2, 2]


@pytest.mark.parametrize("time", [None, 0, 6, slice(2, None, 2),
                                  np.array([0, 1, 1, 0, 0, 0, 1], dtype=bool), "per_sample"])
def test_time_selections(time):
    module = make_stack("GRU")
    x = inputs()
    if isinstance(time, str):
        time = np.random.default_rng(0).random((N, T)) < 0.3
    units = [1, 2]
    with torch.no_grad(), seqacts.intervene(module, seqacts.ablate("l1", units, time=time)):
        y = module(x)
    expected, _ = reference_top(module, x, None, [(1, 0, "h", units, 0.0, time)])
    np.testing.assert_allclose(top_output(module, y), expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN_TANH"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unedited_steps_and_lower_layers_are_bit_identical(kind, dtype):
    module = make_stack(kind, bidirectional=True, layers=3).to(dtype)
    x = inputs().to(dtype)
    edits = [seqacts.ablate("l1", 0, time=4), seqacts.ablate("l1", 1, time=2, direction="backward")]
    plain = seqacts.extract(module, x)
    edited = seqacts.extract(module, x, edits=edits)
    assert edited.h.sel(layer="l0").equals(plain.h.sel(layer="l0"))
    l1_plain, l1_edited = plain.h.sel(layer="l1"), edited.h.sel(layer="l1")
    assert l1_edited.sel(direction="forward", time=slice(0, 3)).equals(
        l1_plain.sel(direction="forward", time=slice(0, 3)))
    assert l1_edited.sel(direction="backward", time=slice(3, None)).equals(
        l1_plain.sel(direction="backward", time=slice(3, None)))
    assert (l1_edited.sel(direction="forward", time=4, unit=0) == 0).all()
    assert not l1_edited.sel(direction="forward", time=slice(5, None)).equals(
        l1_plain.sel(direction="forward", time=slice(5, None)))
    # steps before the first edited step of a unidirectional stack, through the model output
    uni = make_stack(kind, layers=2).to(dtype)
    with torch.no_grad():
        before = uni(x)[0]
        with seqacts.intervene(uni, seqacts.ablate("l0", 1, time=3)):
            after = uni(x)[0]
    assert torch.equal(before[:, :3], after[:, :3]) and not torch.equal(before, after)


def test_packed_edits_past_a_samples_length_do_nothing():
    module = make_stack("LSTM", bidirectional=True)
    x = inputs()
    lengths = torch.tensor([7, 3, 5])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    edit = seqacts.ablate("l0", [0, 1, 2, 3], value=3.0, time=slice(4, None))
    plain = seqacts.extract(module, packed)
    edited = seqacts.extract(module, packed, edits=[edit])
    assert edited.h.sel(sample=1).equals(plain.h.sel(sample=1))  # length 3: never reaches step 4
    assert not edited.h.sel(sample=0).equals(plain.h.sel(sample=0))


def test_recording_an_edited_packed_run_records_the_edited_states():
    module = make_stack("LSTM", bidirectional=True)
    x = inputs()
    lengths = np.array([4, 7, 6])
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    per_sample = np.zeros((N, T), dtype=bool)
    per_sample[0, 1] = per_sample[1, [2, 6]] = per_sample[2, 3] = True
    edits = [
        seqacts.ablate("l0", [0, 2], state="c", value=1.5, time=per_sample, direction="backward"),
        seqacts.ablate("l0", 1, value=-0.5, time=slice(2, 5)),
    ]
    ds = seqacts.extract(module, packed, edits=edits, internals=True)
    layers = reference_stack(module, x.numpy(), lengths, edit=by_hand([
        (0, 1, "c", [0, 2], 1.5, per_sample), (0, 0, "h", [1], -0.5, slice(2, 5)),
    ]))
    for k, ref in enumerate(layers):
        for name in ("h", "c", "forget_gate", "output_gate"):
            np.testing.assert_allclose(ds[name].isel(layer=k).values, ref[name], atol=TOL, rtol=0,
                                       equal_nan=True, err_msg=f"l{k} {name}")  # fmt: skip
        np.testing.assert_allclose(ds.c_n.isel(layer=k).values, ref["c_n"], atol=TOL, rtol=0)


class CellLoop(nn.Module):
    def __init__(self, cell: nn.RNNCellBase) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        state = (h, torch.zeros_like(h)) if isinstance(self.cell, nn.LSTMCell) else h
        hs = []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
            hs.append(state[0] if isinstance(state, tuple) else state)
        return torch.stack(hs, 1)


CELLS = {
    "LSTMCell": lambda: nn.LSTMCell(N_IN, H),
    "GRUCell": lambda: nn.GRUCell(N_IN, H),
    "RNNCell": lambda: nn.RNNCell(N_IN, H),
    "RNNCell_relu": lambda: nn.RNNCell(N_IN, H, nonlinearity="relu"),
}


@pytest.mark.parametrize("name,state", [*((n, "h") for n in CELLS), ("LSTMCell", "c")])
def test_cell_loop_edits_match_reference(name, state):
    torch.manual_seed(0)
    model = CellLoop(CELLS[name]()).double().eval()
    x = inputs()
    time = np.array([0, 1, 0, 1, 1, 0, 0], dtype=bool)
    edit = seqacts.ablate("cell", [0, 2], state=state, value=0.25, time=time)
    with torch.no_grad(), seqacts.intervene(model, edit):
        got = model(x).numpy()
        again = model(x).numpy()  # the step count restarts with each forward
    h = np.zeros((N, H))
    c = np.zeros((N, H))
    expected = []
    for t in range(T):
        edits = [(state, [0, 2], 0.25)] if time[t] else []
        step = reference_cell(model.cell, x[:, t].numpy(), h, c, edits=edits)
        h, c = step["h"], step.get("c", c)
        expected.append(h)
    np.testing.assert_allclose(got, np.stack(expected, 1), atol=TOL, rtol=0)
    np.testing.assert_array_equal(got, again)


def test_a_cell_edited_as_the_root_model_counts_the_callers_loop():
    torch.manual_seed(0)
    cell = nn.GRUCell(N_IN, H).double()
    loop = CellLoop(cell)
    x = inputs()
    with torch.no_grad():
        with seqacts.intervene(loop, seqacts.ablate("cell", 1, value=0.5, time=[False, True, True])):
            expected = loop(x)
        with seqacts.intervene(cell, seqacts.ablate("cell", 1, value=0.5, time=slice(1, 3))):
            h = x.new_zeros(N, H)
            steps = []
            for t in range(T):
                h = cell(x[:, t], h)
                steps.append(h)
    assert torch.equal(torch.stack(steps, 1), expected)


def test_patch_from_a_recording_reproduces_the_source_run():
    module = make_stack("LSTM")
    x, other = inputs(1), inputs(2)
    source = seqacts.extract(module, other)
    with torch.no_grad():
        target = module(other)[0]
        with seqacts.intervene(module, seqacts.patch("l0", source)):
            patched = module(x)[0]
    # every unit of l0 at every step comes from the other run: l1 sees exactly its input
    assert torch.equal(patched, target)
    # one recorded sample broadcasts; a tensor source works too; patch only some units
    one = source.isel(sample=[1])
    ds = seqacts.extract(module, x, edits=seqacts.patch("l0", one, units=[2], time=slice(0, 3)))
    np.testing.assert_array_equal(ds.h.sel(layer="l0", unit=2, time=slice(0, 2)).values[:, 0],
                                  np.broadcast_to(one.h.sel(layer="l0", unit=2, time=slice(0, 2))
                                                  .values[:, 0], (N, 3)))  # fmt: skip
    tensor = torch.from_numpy(source.h.sel(layer="l0", direction="forward").values)
    with torch.no_grad(), seqacts.intervene(module, seqacts.patch("l0", tensor)):
        assert torch.equal(module(x)[0], target)


def test_patch_cell_state_from_recording():
    module = make_stack("LSTM", layers=1)
    x, other = inputs(1), inputs(2)
    source = seqacts.extract(module, other, internals=["c"])
    edited = seqacts.extract(module, x, edits=seqacts.patch("l0", source, state="c"),
                             internals=["c", "output_gate"])  # fmt: skip
    np.testing.assert_array_equal(edited.c.values, source.c.values)
    # h follows the patched c through this run's own output gate
    np.testing.assert_allclose(edited.h.values, edited.output_gate * np.tanh(edited.c.values),
                               atol=1e-12, rtol=0)  # fmt: skip


def test_ablation_scan_equals_separate_edited_forwards():
    torch.manual_seed(0)
    model = make_stack("LSTM", bidirectional=True)
    x = inputs()

    def score(y):
        return y[0].pow(2).mean((1, 2))

    scan = seqacts.ablation_scan(model, x, score, layers="l1", batch_units=3)
    assert scan.effect.dims == ("sample", "layer", "direction", "unit")
    assert scan.mean_effect.dims == ("layer", "direction", "unit")
    with torch.no_grad():
        base = score(model(x)).numpy()
    for direction in ("forward", "backward"):
        for unit in range(H):
            edit = seqacts.ablate("l1", unit, direction=direction)
            with torch.no_grad(), seqacts.intervene(model, edit):
                expected = score(model(x)).numpy() - base
            got = scan.effect.sel(layer="l1", direction=direction, unit=unit).values
            np.testing.assert_allclose(got, expected, atol=1e-12, rtol=0)
    np.testing.assert_allclose(scan.mean_effect.values, scan.effect.mean("sample").values)
    cells = seqacts.ablation_scan(CellLoop(nn.LSTMCell(N_IN, H)).double(), x,
                                  lambda y: y.sum((1, 2)), state="c")  # fmt: skip
    assert cells.effect.sizes == {"sample": N, "layer": 1, "direction": 1, "unit": H}
    some = seqacts.ablation_scan(model, x, score, units={"l1": [2, 0]}, batch_units=2)
    assert list(some["layer"].values) == ["l1"]
    picked = some.effect.sel(unit=[0, 2])
    np.testing.assert_allclose(picked.values, scan.effect.sel(unit=[0, 2]).values,
                               atol=1e-12, rtol=0)  # fmt: skip
    assert np.isnan(some.effect.drop_sel(unit=[0, 2]).values).all()
    with pytest.raises(seqacts.LayerSelectionError, match="no layer matches 'l9'"):
        seqacts.ablation_scan(model, x, score, units={"l9": [0]})
    with pytest.raises(seqacts.EditError, match="units: 'l0' is not among the scanned layers"):
        seqacts.ablation_scan(model, x, score, layers="l1", units={"l0": [0]})
    with pytest.raises(seqacts.EditError, match=f"l1 has units 0..{H - 1}"):
        seqacts.ablation_scan(model, x, score, units={"l1": [H]})


def test_edits_compose_with_record_and_gradients():
    module = make_stack("GRU").train()
    x = inputs().requires_grad_(True)
    with seqacts.record(module) as rec, seqacts.intervene(module, seqacts.ablate("l0", 1, time=2)):
        y = module(x)[0]
    y.sum().backward()
    assert x.grad is not None and module.training
    ds = rec.to_dataset()
    assert float(ds.h.sel(layer="l0", unit=1, time=2).max()) == 0.0


@pytest.mark.parametrize("packed", [False, True])
def test_edited_lstm_forwards_are_differentiable(packed):
    module = make_stack("LSTM", bidirectional=True)
    x = inputs()
    edits = [seqacts.ablate("l0", 1, state="c", time=3, value=1.0),
             seqacts.ablate("l0", 2, time=4, direction="backward")]  # fmt: skip

    def run(x):
        arg = pack_padded_sequence(x, torch.tensor([7, 5, 6]), batch_first=True,
                                   enforce_sorted=False) if packed else x  # fmt: skip
        with seqacts.intervene(module, edits):
            return module(arg)

    with torch.no_grad():
        expected = top_output(module, run(x))
    x = x.clone().requires_grad_(True)
    y = run(x)
    np.testing.assert_allclose(top_output(module, y), expected, atol=1e-12, rtol=0,
                               equal_nan=True)  # fmt: skip
    (y[0].data if packed else y[0]).sum().backward()
    assert x.grad is not None and bool(x.grad[:, :3].abs().sum() > 0)


def test_model_and_kernels_restored_on_exit_and_on_errors():
    module = make_stack("LSTM")
    cell = CellLoop(nn.LSTMCell(N_IN, H)).double()
    kernels = [*STACK_KERNELS.values(), *CELL_KERNELS.values()]
    before = {name: getattr(torch._VF, name) for name in kernels}
    with pytest.raises(RuntimeError, match="boom"):
        with seqacts.intervene(module, seqacts.ablate("l1", 0)):
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        with seqacts.intervene(cell, seqacts.ablate("cell", 0)):
            cell(torch.randn(N, T, N_IN + 1, dtype=torch.float64))  # wrong input size
    assert {name: getattr(torch._VF, name) for name in kernels} == before
    for m in (module, cell):
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_errors_name_the_problem_and_the_fix():
    module = make_stack("GRU")
    with pytest.raises(seqacts.LayerSelectionError, match="available: l0, l1"):
        seqacts.intervene(module, seqacts.ablate("l3", 0))
    with pytest.raises(seqacts.EditError, match=r"l0, whose 'h' has 4 units \(0..3\)"):
        seqacts.intervene(module, seqacts.ablate("l0", 9))
    with pytest.raises(seqacts.EditError, match="no cell state"):
        seqacts.intervene(module, seqacts.ablate("l0", 0, state="c"))
    with pytest.raises(seqacts.EditError, match="unidirectional"):
        seqacts.intervene(module, seqacts.ablate("l0", 0, direction="backward"))
    with pytest.raises(seqacts.EditError, match="state"):
        seqacts.ablate("l0", 0, state="x")
    with pytest.raises(seqacts.EditError, match="ran 7 steps"):
        with seqacts.intervene(module, seqacts.ablate("l0", 0, time=np.ones(5, dtype=bool))):
            module(inputs())
    with pytest.raises(seqacts.EditError, match="time: expected"):
        seqacts.ablate("l0", 0, time="all")
    with pytest.raises(seqacts.EditError, match="source for 2 samples, but the model ran 3"):
        with seqacts.intervene(module, seqacts.patch("l0", torch.zeros(2, T, H))):
            module(inputs())
    with pytest.raises(seqacts.EditError, match="already edited"):
        with seqacts.intervene(module, seqacts.ablate("l0", 0)):
            with seqacts.intervene(module, seqacts.ablate("l0", 1)):
                pass
