"""Cost of edited forwards (``seqacts.intervene``) and of ``seqacts.ablation_scan``.

1. The 3-layer LSTM of the other benchmarks (batch 64, T=512, hidden 256, input 32, CPU
   float32): a plain forward against the same forward with one unit of ``l1`` ablated at one
   step (target <= 1.3x) and at all steps; then a GRU of the same size, one step. Beside each
   one-step row: the kernel passes an exact edit needs, over those of a plain forward (the
   edited layer runs once unedited, for bit-identical earlier steps; an LSTM once more up to
   the edited step, for its cell state; then once after it).
2. ``ablation_scan`` of every unit of a 2-layer, 64-unit LSTM against as many separate edited
   forwards, one unit each (target <= 0.3x).
3. ``extract_to_netcdf(..., edits=)`` (8 batches of that 2-layer LSTM) against the hand-written
   alternative (each batch extracted under ``seqacts.intervene``, then ``write_stream``), and
   against the same stream without edits.

Prints ratios measured in one run (rows timed round-robin); asserts nothing about time.
``--quick`` shrinks the sizes for a smoke run.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_args, machine, timed_together  # noqa: E402

import seqacts  # noqa: E402


def main() -> None:
    args = bench_args(__doc__)
    batch, steps, hidden, inputs, n_layers = (64, 512, 256, 32, 3)
    scan_batch, scan_steps, scan_hidden = (16, 128, 64)
    if args.quick:
        batch, steps, hidden = 8, 64, 32
        scan_batch, scan_steps, scan_hidden = 4, 16, 8
    torch.manual_seed(0)
    model = nn.LSTM(inputs, hidden, num_layers=n_layers).eval()
    x = torch.randn(steps, batch, inputs)
    one_step = seqacts.ablate("l1", 0, time=steps // 2)
    all_steps = seqacts.ablate("l1", 0)

    def plain() -> object:
        with torch.no_grad():
            return model(x)

    def edited(edit: seqacts.Edit) -> object:
        with torch.no_grad(), seqacts.intervene(model, edit):
            return model(x)

    gru = nn.GRU(inputs, hidden, num_layers=n_layers).eval()

    def plain_gru() -> object:
        with torch.no_grad():
            return gru(x)

    def edited_gru() -> object:
        with torch.no_grad(), seqacts.intervene(gru, one_step):
            return gru(x)

    t = timed_together({"plain": plain, "one step": lambda: edited(one_step),
                        "all steps": lambda: edited(all_steps), "gru plain": plain_gru,
                        "gru one step": edited_gru}, args.repeats)  # fmt: skip
    lstm_passes = (n_layers + 1) / n_layers  # unedited + up to t + after t = 2 passes of l1
    gru_passes = (n_layers + 1 - (steps // 2) / steps) / n_layers  # unedited + after t

    print(f"machine: {machine()}")
    print(f"model: LSTM {n_layers} layers, batch {batch}, T={steps}, hidden {hidden}, "
          f"input {inputs}, CPU float32; edit: l1 unit 0")
    print(f"plain forward              {t['plain'] * 1e3:9.1f} ms   1.00x")
    print(f"edited, one unit one step  {t['one step'] * 1e3:9.1f} ms   "
          f"{t['one step'] / t['plain']:.2f}x   (target <= 1.3x; exact edit: "
          f"{lstm_passes:.2f}x the kernel passes)")
    print(f"edited, one unit all steps {t['all steps'] * 1e3:9.1f} ms   "
          f"{t['all steps'] / t['plain']:.2f}x")
    print(f"GRU plain forward          {t['gru plain'] * 1e3:9.1f} ms   1.00x")
    print(f"GRU edited, one step       {t['gru one step'] * 1e3:9.1f} ms   "
          f"{t['gru one step'] / t['gru plain']:.2f}x   (exact edit: {gru_passes:.2f}x the "
          "kernel passes)", flush=True)

    small = nn.LSTM(inputs, scan_hidden, num_layers=2, batch_first=True).eval()
    xs = torch.randn(scan_batch, scan_steps, inputs)

    def score(y: tuple[torch.Tensor, object]) -> torch.Tensor:
        return y[0].pow(2).mean((1, 2))

    def scan() -> object:
        return seqacts.ablation_scan(small, xs, score)

    def separate() -> object:
        with torch.no_grad():
            base = score(small(xs))
            for layer in ("l0", "l1"):
                for unit in range(scan_hidden):
                    with seqacts.intervene(small, seqacts.ablate(layer, unit)):
                        score(small(xs)) - base
        return None

    s = timed_together({"scan": scan, "separate": separate}, max(1, args.repeats // 2))
    n_units = 2 * scan_hidden
    print(f"scan model: LSTM 2 layers, {scan_hidden} units, batch {scan_batch}, T={scan_steps}; "
          f"{n_units} units ablated at all steps")
    print(f"{n_units} separate edited forwards {s['separate'] * 1e3:9.1f} ms   1.00x")
    print(f"ablation_scan              {s['scan'] * 1e3:9.1f} ms   "
          f"{s['scan'] / s['separate']:.2f}x   (target <= 0.3x)", flush=True)
    stream_edits(small, xs, seqacts.ablate("l1", 0, time=scan_steps // 2),
                 max(1, args.repeats // 2))


def stream_edits(model: nn.Module, x: torch.Tensor, edit: seqacts.Edit, repeats: int) -> None:
    """Section 3: edits= through the stream, against the loop a user would write."""
    batches = list(x.repeat(2, 1, 1).split(max(1, x.shape[0] // 4)))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)

        def streamed(edits: list[seqacts.Edit]) -> object:
            return seqacts.extract_to_netcdf(model, batches, out / "s.nc", edits=edits,
                                             overwrite=True, progress=False)

        def by_hand() -> object:
            def recorded() -> Iterator[object]:
                for b in batches:
                    with seqacts.intervene(model, edit):
                        yield seqacts.extract(model, b)
            return seqacts.write_stream(recorded(), out / "h.nc", overwrite=True)

        t = timed_together({"by hand": by_hand, "edits": lambda: streamed([edit]),
                            "no edits": lambda: streamed([])}, repeats)  # fmt: skip
    print(f"stream: {len(batches)} batches of {batches[0].shape[0]}, T={x.shape[1]}; "
          "edit: l1 unit 0, one step")
    print(f"intervene + extract + write_stream {t['by hand'] * 1e3:9.1f} ms   1.00x")
    print(f"extract_to_netcdf(edits=)         {t['edits'] * 1e3:9.1f} ms   "
          f"{t['edits'] / t['by hand']:.2f}x   (no edits: {t['no edits'] / t['by hand']:.2f}x)")


if __name__ == "__main__":
    main()
