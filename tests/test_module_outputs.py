"""``modules=`` outputs sit in the rows of the chain they belong to, or are NaN and warned.

Every expected value is captured by a plain forward hook of the test's own (or computed in
float64 from the module's weights), never read back from seqacts.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import seqacts
from seqacts import RecordingWarning


class Captured:
    """The outputs of ``module``'s calls, in order, seen by a forward hook of the test's own."""

    def __init__(self, module: nn.Module) -> None:
        self.values: list[np.ndarray] = []
        self.handle = module.register_forward_hook(self.hook)

    def hook(self, module: nn.Module, args: object, out: object) -> None:
        t = out[0] if isinstance(out, tuple) else out
        assert isinstance(t, torch.Tensor)
        self.values.append(t.detach().numpy().copy())


def recorded(model: nn.Module, run, modules: list[str], watch: dict[str, nn.Module]):  # noqa: ANN001, ANN201
    """Run ``run()`` under ``record``; the dataset, the warnings and each watched module's calls."""
    hooks = {name: Captured(m) for name, m in watch.items()}
    with warnings.catch_warnings(record=True) as caught, seqacts.record(model, modules=modules) as rec:
        warnings.simplefilter("always")
        run()
        ds = rec.to_dataset()
    for h in hooks.values():
        h.handle.remove()
    told = [str(w.message) for w in caught if issubclass(w.category, RecordingWarning)]
    return ds, told, {name: h.values for name, h in hooks.items()}


def chain_rows(ds, layer: str, chain: int) -> np.ndarray:  # noqa: ANN001
    """The samples holding ``layer``'s ``chain``-th chain of calls, in row order."""
    one = ds.sel(layer=layer)
    first_calls = sorted(set(one.call.values.tolist()) - {-1})
    rows = np.flatnonzero(one.call.values == first_calls[chain])
    return rows[np.argsort(one.call_row.values[rows])]


class Tagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 5)
        self.lstm = nn.LSTM(5, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(x))
        return self.head(out[:, -1])

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).pow(2).mean()


def test_loss_called_twice_puts_each_call_of_head_and_embed_in_its_chains_rows():
    torch.manual_seed(0)
    model = Tagger()
    xs = [torch.randn(4, 6, 3), torch.randn(4, 6, 3)]
    ds, told, seen = recorded(model, lambda: [model.loss(x) for x in xs], ["head", "embed"],
                              {"head": model.head, "embed": model.embed})
    assert told == []
    assert ds.sizes["sample"] == 8 and "head.call" not in ds.dims
    for call in (0, 1):
        rows = chain_rows(ds, "lstm.l0", call)
        assert rows.tolist() == list(range(4 * call, 4 * call + 4))
        np.testing.assert_array_equal(ds["head"].values[rows], seen["head"][call])
        np.testing.assert_array_equal(ds["embed"].values[rows], seen["embed"][call])


def test_heads_on_views_of_two_earlier_runs_go_to_each_runs_rows_by_data_flow():
    torch.manual_seed(7)
    model = Tagger()
    xs = [torch.randn(4, 6, 3), torch.randn(4, 6, 3)]

    def both_then_heads() -> None:
        outs = [model.lstm(model.embed(x))[0] for x in xs]
        for out in outs:  # both runs before either head: order and size cannot tell
            model.head(out[:, -1])

    ds, told, seen = recorded(model, both_then_heads, ["head"], {"head": model.head})
    assert told == []
    assert "head.call" not in ds.dims
    for call in (0, 1):
        rows = chain_rows(ds, "lstm.l0", call)
        np.testing.assert_array_equal(ds["head"].values[rows], seen["head"][call])


class Seq2Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.GRU(3, 4, batch_first=True)
        self.embed = nn.Linear(2, 3)
        self.decoder = nn.GRU(3, 4, batch_first=True)

    def forward(self, src: torch.Tensor, targets: list[torch.Tensor]) -> list[torch.Tensor]:
        _, h = self.encoder(src)  # once
        return [self.decoder(self.embed(y), h)[0] for y in targets]  # embed before each run


def test_an_embedding_run_before_each_of_two_decoder_runs_after_one_encoder_run_goes_to_each_run():
    torch.manual_seed(8)
    model = Seq2Seq()
    src, targets = torch.randn(3, 5, 3), [torch.randn(3, 4, 2), torch.randn(3, 4, 2)]
    ds, told, seen = recorded(model, lambda: model(src, targets), ["embed"], {"embed": model.embed})
    assert [m for m in told if "module output" in m] == []  # (encoder and decoder rows differ)
    runs = [chain_rows(ds, "decoder.l0", run) for run in (0, 1)]
    assert len(runs[0]) == len(runs[1]) == 3 and set(runs[0]).isdisjoint(runs[1])
    for run in (0, 1):
        np.testing.assert_array_equal(ds["embed"].values[runs[run]], seen["embed"][run])
    placed = ~np.isnan(ds["embed"].values).all(axis=tuple(range(1, ds["embed"].ndim)))
    assert sorted(np.flatnonzero(placed).tolist()) == sorted([*runs[0], *runs[1]])


def test_a_model_that_is_an_lstm_called_twice_places_its_time_major_output_per_call():
    torch.manual_seed(1)
    lstm = nn.LSTM(3, 4)  # time-major: output (T, B, H)
    xs = [torch.randn(5, 3, 3), torch.randn(5, 3, 3)]
    ds, told, seen = recorded(lstm, lambda: [lstm(x) for x in xs], ["model"], {"model": lstm})
    assert told == []
    assert ds["model"].dims == ("sample", "model.dim1", "model.dim2")
    for call in (0, 1):
        rows = chain_rows(ds, "l0", call)
        assert len(rows) == 3
        np.testing.assert_array_equal(ds["model"].values[rows], seen["model"][call].transpose(1, 0, 2))
        # and the module's rows are the layer's rows: the output at step t is h at step t
        np.testing.assert_array_equal(ds["model"].values[rows], ds.h.values[rows, 0, 0])


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(3, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generate(x, 1)

    def generate(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        state = None
        out = []
        for t in range(steps):
            state = self.cell(x[:, t], state)
            out.append(self.head(state[0]))
        return torch.stack(out, 1)


def test_a_per_step_head_of_a_decoder_loop_run_twice_gets_one_call_per_step_aligned():
    torch.manual_seed(2)
    model = Decoder()
    xs = [torch.randn(3, 4, 3), torch.randn(3, 4, 3)]
    ds, told, seen = recorded(model, lambda: [model.generate(x, 4) for x in xs], ["head"],
                              {"head": model.head})
    assert told == []
    assert ds.sizes["sample"] == 6 and ds.sizes["head.call"] == 4
    weight = model.head.weight.detach().double().numpy()
    bias = model.head.bias.detach().double().numpy()
    for run in (0, 1):
        rows = chain_rows(ds, "cell", run)
        for t in range(4):
            np.testing.assert_array_equal(ds["head"].values[rows, t], seen["head"][4 * run + t])
            reference = ds.h.values[rows, 0, 0, t].astype(np.float64) @ weight.T + bias
            np.testing.assert_allclose(ds["head"].values[rows, t], reference, rtol=1e-5, atol=1e-6)


class Sampler(nn.Module):
    """DeepAR-style: the GRU encodes B series, then steps B*S draws; a head on the draws."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(3, 4, batch_first=True)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)
        h = h.repeat_interleave(2, dim=1)
        out, _ = self.gru(torch.zeros(h.shape[1], 3, 3), h)  # 3 steps: as many as series
        return self.head(out)  # (6, 3, 1): its first axis is the draws' batch, not the second


def test_a_head_on_draws_goes_to_the_draws_rows_by_its_batch_size():
    torch.manual_seed(3)
    model = Sampler()
    x = torch.randn(3, 5, 3)
    ds, told, seen = recorded(model, lambda: model(x), ["head"], {"head": model.head})
    assert told == []
    encoder, draws = chain_rows(ds, "gru.l0", 0), chain_rows(ds, "gru.l0", 1)
    assert len(encoder) == 3 and len(draws) == 6
    np.testing.assert_array_equal(ds["head"].values[draws], seen["head"][0])
    assert np.isnan(ds["head"].values[encoder]).all()


def interleave(model: Decoder, q: torch.Tensor, d: torch.Tensor, feed) -> None:  # noqa: ANN001
    """Step two chains of the same size in turn; run the head on ``feed(h_q, h_d)`` after each."""
    sq = sd = None
    for t in range(4):
        sq = model.cell(q[:, t], sq)
        sd = model.cell(d[:, t], sd)
        for h in feed(sq[0], sd[0]):
            model.head(h)


def test_interleaved_chains_of_the_same_size_place_a_head_on_each_chains_state_by_data_flow():
    torch.manual_seed(4)
    model = Decoder()
    q, d = torch.randn(3, 4, 3), torch.randn(3, 4, 3)
    ds, told, seen = recorded(model, lambda: interleave(model, q, d, lambda a, b: (a, b)),
                              ["head"], {"head": model.head})
    assert told == []
    assert ds.sizes["head.call"] == 4
    for chain in (0, 1):
        rows = chain_rows(ds, "cell", chain)
        for t in range(4):
            np.testing.assert_array_equal(ds["head"].values[rows, t], seen["head"][2 * t + chain])


def test_interleaved_chains_of_the_same_size_leave_an_unlinked_head_nan_and_warn():
    torch.manual_seed(4)
    model = Decoder()
    q, d = torch.randn(3, 4, 3), torch.randn(3, 4, 3)
    ds, told, _ = recorded(model, lambda: interleave(model, q, d, lambda a, b: (a.clone(), b.clone())),
                           ["head"], {})
    assert ds.sizes["sample"] == 6
    assert sorted(set(ds.call.values.ravel().tolist())) == [0, 1]
    assert np.isnan(ds["head"].values).all()
    assert len(told) == 1
    assert "'head' in group 0 (samples 0..5)" in told[0]
    assert "cannot be told" in told[0] and "no recorded layer ran" in told[0]
    assert "one model(...) call per batch" in told[0] and "call coordinate" in told[0]


def test_a_module_taking_the_states_of_two_chains_is_left_nan_and_warned():
    torch.manual_seed(4)
    model = Decoder()
    model.join = nn.Bilinear(4, 4, 2)  # one output from both chains' states
    q, d = torch.randn(3, 4, 3), torch.randn(3, 4, 3)

    def joined() -> None:
        sq = sd = None
        for t in range(4):
            sq = model.cell(q[:, t], sq)
            sd = model.cell(d[:, t], sd)
            model.join(sq[0], sd[0])

    ds, told, _ = recorded(model, joined, ["join"], {})
    assert ds["join"].shape == (6, 2)  # no call placed: no call axis
    assert np.isnan(ds["join"].values).all()
    assert len(told) == 1 and "'join' in group 0" in told[0]
    assert told[0].count("its inputs come from several chains (3, 3 rows)") == 4


@pytest.mark.parametrize(("batches", "reduce", "reason"), [
    ((4, 3), lambda out: out.mean((0, 1)), "no axis of the row count of the chains that ran"),
    # a view of the output: linked by data flow, but 6 steps, not 3 rows
    ((3, 3), lambda out: out[0], "(6x2) has no axis of the row count of the chain its data flows"),
])
def test_an_output_of_no_chains_size_is_left_nan_and_warned(batches, reduce, reason):
    torch.manual_seed(5)
    model = Tagger()
    xs = [torch.randn(n, 6, 3) for n in batches]

    def reduced() -> None:
        for x in xs:
            out, _ = model.lstm(model.embed(x))
            model.head(reduce(out))

    ds, told, _ = recorded(model, reduced, ["head"], {})
    assert ds.sizes["sample"] == sum(batches)
    assert np.isnan(ds["head"].values).all()
    assert len(told) == 1 and told[0].count(reason) == 2


@pytest.mark.parametrize("runs", [1, 2])
def test_one_chain_groups_keep_every_call_from_row_zero(runs):
    torch.manual_seed(6)
    model = Decoder()
    xs = [torch.randn(3, 4, 3) for _ in range(runs)]
    ds, told, seen = recorded(model, lambda: [model(x) for x in xs], ["head"],
                              {"head": model.head})
    assert told == [] and "call" not in ds.coords
    np.testing.assert_array_equal(ds["head"].values, np.concatenate(seen["head"]))


class CopyingTagger(Tagger):
    """The head reads a copy of the LSTM's output: no data flow links it to a layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(x))
        return self.head(out[:, -1].clone())


def test_a_placement_by_order_and_size_alone_is_told():
    torch.manual_seed(2)
    model = CopyingTagger()
    xs = [torch.randn(4, 6, 3), torch.randn(4, 6, 3)]
    ds, told, seen = recorded(model, lambda: [model.loss(x) for x in xs], ["head"],
                              {"head": model.head})
    assert len(told) == 1 and "'head'" in told[0], told
    assert "call 0 in rows 0..3; call 1 in rows 4..7" in told[0]
    assert "placed by the order of the calls and the batch size alone" in told[0]
    for chain in (0, 1):  # placed (by order, here rightly), and said to be unproven
        rows = chain_rows(ds, "lstm.l0", chain)
        np.testing.assert_array_equal(ds["head"].values[rows], seen["head"][chain])
