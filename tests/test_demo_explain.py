"""The demo's pointing game, the report's explanation panels, and the demo's figure itself."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from seqacts.demo import ANOMALIES, DemoConfig, run_demo
from seqacts.demo_explain import pointing_game
from seqacts.viz.report_explain import largest_gradient_effect


def _ds() -> xr.Dataset:
    attr = np.zeros((3, 5, 2))
    attr[0, 2, 1] = 3.0  # inside: step 2, channel b
    attr[1, 4, 1] = -5.0  # the right channel, outside the steps
    attr[2, 1, 0] = 2.0  # the right step, the wrong channel
    mask = np.zeros((3, 5), dtype=bool)
    mask[0, 2:4] = mask[1, 1:3] = mask[2, 1] = True
    return xr.Dataset(
        {"attribution": (("sample", "time", "channel"), attr),
         "anomaly_mask": (("sample", "time"), mask)},
        coords={"channel": ["a", "b"], "anomaly": ("sample", ["spike", "spike", "frozen"]),
                "anomaly_channel": ("sample", ["b", "b", "b"])},
    )  # fmt: skip


def test_pointing_game_counts_cells_inside_the_injected_anomaly() -> None:
    assert pointing_game(_ds()) == {"spike": 0.5, "frozen": 0.0}


def test_largest_gradient_effect_names_layer_direction_and_step() -> None:
    g = np.zeros((1, 2, 1, 4, 3))
    g[0, 1, 0, 2, 1] = -4.0
    h = np.full_like(g, 0.5)
    ds = xr.Dataset({"grad_h": (("sample", "layer", "direction", "time", "unit"), g),
                     "h": (("sample", "layer", "direction", "time", "unit"), h)},
                    coords={"sample": [7], "layer": ["l0", "l1"], "direction": ["forward"]})
    assert largest_gradient_effect(ds, 7) == ("l1", "forward", 2, 2.0)
    assert largest_gradient_effect(ds.drop_vars("grad_h"), 7) is None


@pytest.mark.slow  # trains the demo's model (~16 s on two idle cores) and runs its report
def test_demo_pointing_game_reaches_the_goal(tmp_path) -> None:
    result = run_demo(tmp_path, DemoConfig(), log=lambda _: None)
    assert set(result.pointing) == set(ANOMALIES)
    assert result.pointing["spike"] >= 0.8 and result.pointing["level_shift"] >= 0.8
