"""Property test of the rule "how calls become samples" (hypothesis).

Random sequences of calls: an ``nn.LSTM`` and a ``GRUCell`` loop, different batch sizes and
lengths, the state passed on (the returned tensor, a view of its first rows, or a bitwise copy)
or not, from the root model's ``forward`` or from another method. Whatever the sequence, every
row of the dataset holds exactly one true chain of calls (the values the model received, bit
for bit), every true chain appears exactly once, ``length`` is its number of steps, and its
valid steps are a prefix.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_calls import rows_of, same_rows
from torch import nn

import seqacts

ops = st.tuples(
    st.sampled_from(["lstm", "cell"]),
    st.integers(1, 4),  # rows
    st.integers(1, 3),  # steps
    st.sampled_from(["fresh", "passed", "copied"]),  # the initial state
)
plans = st.lists(st.tuples(st.sampled_from(["forward", "method"]), st.lists(ops, min_size=1,
                                                                              max_size=4)),
                 min_size=1, max_size=3)


class Calls(nn.Module):
    """Runs a plan of calls; ``truth`` collects each layer's true chains, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(2, 3, num_layers=2, batch_first=True)
        self.cell = nn.GRUCell(2, 3)

    def forward(self, plan: list, truth: dict) -> None:
        self.run(plan, truth)

    def run(self, plan: list, truth: dict) -> None:
        state: dict[str, object] = {}
        tail: dict[str, list] = {}  # the chain each module's last call ended
        for module, n, steps, how in plan:
            prev = state.get(module)
            rows = prev[0].shape[-2] if module == "lstm" and prev is not None else (
                prev.shape[0] if prev is not None else 0)
            passed = how != "fresh" and prev is not None and n <= rows
            chain = tail[module] if passed else [[] for _ in range(n)]
            if not passed:
                truth[module].append(chain)
            if module == "lstm":
                hx = None
                if passed:
                    hx = tuple(s[:, :n] for s in prev)
                    hx = tuple(s.clone() for s in hx) if how == "copied" else hx
                out, state["lstm"] = self.lstm(torch.randn(n, steps, 2), hx)
                for i in range(n):
                    chain[i].extend(out[i].numpy())
            else:
                h = None
                if passed:
                    h = prev[:n].clone() if how == "copied" else prev[:n]
                for _ in range(steps):
                    h = self.cell(torch.randn(n, 2), h)
                    for i in range(n):
                        chain[i].append(h[i].numpy().copy())
                state["cell"] = h
            tail[module] = chain


@settings(max_examples=40, deadline=None)
@given(plans, st.integers(0, 2**16))
def test_every_row_is_one_true_chain_and_every_chain_one_row(plan, seed):
    torch.manual_seed(seed)
    model = Calls().eval()
    truth: dict[str, list] = {"lstm": [], "cell": []}
    with torch.no_grad(), seqacts.record(model) as rec:
        for how, calls in plan:
            (model if how == "forward" else model.run)(calls, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", seqacts.RecordingWarning)
        ds = rec.to_dataset()
    for module, layer in (("lstm", "lstm.l1"), ("cell", "cell")):
        expected = [np.stack(row) for chain in truth[module] for row in chain]
        same_rows(rows_of(ds, layer), expected)
    # the lower layer of the stack chains exactly like the top one (state compared per layer)
    lower, top = (ds.length.sel(layer=k).values for k in ("lstm.l0", "lstm.l1"))
    np.testing.assert_array_equal(lower, top)
    assert ds.sizes["time"] == max(len(row) for chains in truth.values() for chain in chains
                                   for row in chain)
