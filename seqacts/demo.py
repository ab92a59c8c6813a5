"""The built-in end-to-end example: from sensor windows to an anomaly diagnosis.

Multichannel sensor windows get injected anomalies (spikes, level shifts, a frozen sensor); a
small LSTM autoencoder is trained on normal windows only; seqacts records its activations with
internals for a held-out mix, and the Mahalanobis distance of the final hidden states to
held-out normal windows separates anomalous from normal windows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import nn

from .errors import MissingDependencyError, OptionError

__all__ = [
    "ANOMALIES",
    "DemoConfig",
    "LSTMAutoencoder",
    "build_model",
    "inject_anomalies",
    "kind_auc",
    "run_demo",
    "sensor_windows",
    "train_autoencoder",
]

ANOMALIES: tuple[str, ...] = ("spike", "level_shift", "frozen")
CHANNELS: tuple[str, ...] = ("temperature", "pressure", "vibration", "flow")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults train in a few seconds on two CPU cores."""

    n_steps: int = 48
    hidden: int = 32
    n_train: int = 512
    n_reference: int = 1024
    n_test: int = 64  # windows per group: normal and each anomaly kind
    epochs: int = 60
    batch_size: int = 64
    seed: int = 0


def sensor_windows(n: int, n_steps: int, rng: np.random.Generator) -> np.ndarray:
    """Normal windows, shape (n, n_steps, 4): correlated periodic channels with noise.

    Each channel has its own period; phases and amplitudes vary per window; ``flow`` follows
    ``pressure`` with a lag, so a broken sensor also breaks a cross-channel relation.
    """
    t = np.arange(n_steps)[None, :]
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    amp = rng.uniform(0.6, 1.2, (n, 1))
    temperature = amp * np.sin(2 * np.pi * t / 24 + phase)
    pressure = 0.8 * np.sin(2 * np.pi * t / 12 + 2 * phase) + 0.3 * temperature
    vibration = 0.5 * np.sin(2 * np.pi * t / 6 + rng.uniform(0, 2 * np.pi, (n, 1)))
    flow = 0.9 * np.roll(pressure, 3, axis=1) + rng.uniform(-0.3, 0.3, (n, 1))
    x = np.stack([temperature, pressure, vibration, flow], axis=-1)
    return (x + rng.normal(0, 0.08, x.shape)).astype(np.float32)


def inject_anomalies(
    x: np.ndarray, kinds: list[str], rng: np.random.Generator,
    channels: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Put one anomaly of the given kind into each window (``"normal"`` leaves it untouched).

    Returns the modified windows and a boolean mask (window, step) of where anomalies are;
    a list passed as ``channels`` receives each window's anomalous channel (-1: normal).
    """
    x = x.copy()
    where = np.zeros(x.shape[:2], dtype=bool)
    n_steps = x.shape[1]
    for i, kind in enumerate(kinds):
        ch = rng.integers(0, x.shape[2])
        if channels is not None:
            channels.append(-1 if kind == "normal" else int(ch))
        start = int(rng.integers(n_steps // 2, n_steps - 6))
        if kind == "spike":
            steps = start + np.arange(int(rng.integers(2, 5)))
            x[i, steps, ch] += rng.choice([-1, 1]) * rng.uniform(5, 8)
            where[i, steps] = True
        elif kind == "level_shift":
            x[i, start:, ch] += rng.choice([-1, 1]) * rng.uniform(1.2, 2.0)
            where[i, start:] = True
        elif kind == "frozen":
            x[i, start:, ch] = x[i, start, ch]
            where[i, start:] = True
        elif kind != "normal":
            raise OptionError(
                f"kind: expected normal or one of {', '.join(ANOMALIES)}, got {kind!r}"
            )
    return x, where


class LSTMAutoencoder(nn.Module):
    """Encode a window into the encoder's final state; decode it back step by step."""

    def __init__(self, n_channels: int = 4, hidden: int = 24) -> None:
        super().__init__()
        self.encoder = nn.LSTM(n_channels, hidden, batch_first=True)
        self.decoder = nn.LSTM(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.encoder(x)
        latent = h_n[-1].unsqueeze(1).expand(-1, x.shape[1], -1)
        out, _ = self.decoder(latent)
        return self.head(out)


def build_model() -> LSTMAutoencoder:
    """Factory for ``seqacts extract seqacts.demo:build_model`` (the demo's architecture)."""
    return LSTMAutoencoder(len(CHANNELS), DemoConfig().hidden)


def train_autoencoder(
    model: nn.Module, x: np.ndarray, config: DemoConfig, log: Callable[[str], None] = print
) -> float:
    """Train on normal windows with Adam and a mean squared reconstruction error; final loss."""
    # One thread: for a model this small, more threads only add synchronisation, and on a
    # busy machine oversubscribed threads wait for each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, x, config, log)
    finally:
        torch.set_num_threads(threads)


def _train(
    model: nn.Module, x: np.ndarray, config: DemoConfig, log: Callable[[str], None]
) -> float:
    gen = torch.Generator().manual_seed(config.seed)
    data = torch.from_numpy(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    model.train()
    loss = torch.tensor(float("nan"))
    for epoch in range(config.epochs):
        for idx in torch.randperm(len(data), generator=gen).split(config.batch_size):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(data[idx]), data[idx])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        sched.step()
        if (epoch + 1) % 10 == 0:
            log(f"  epoch {epoch + 1:3d}/{config.epochs}: reconstruction loss {loss.item():.4f}")
    model.eval()
    return float(loss.item())


@dataclass
class DemoResult:
    """What :func:`run_demo` produced: files and ROC AUC per score and kind ("all" = pooled)."""

    dataset: Path
    report: Path
    auc: dict[str, float]
    reconstruction_auc: float
    kind_auc: dict[str, dict[str, float]]
    pointing: dict[str, float]


def _labelled(ds: xr.Dataset, x: np.ndarray, kinds: list[str], where: np.ndarray,
              channels: list[int]) -> xr.Dataset:
    ds = ds.assign_coords(
        is_anomaly=("sample", np.array([k != "normal" for k in kinds])),
        anomaly=("sample", np.array(kinds)),
        channel=list(CHANNELS),
        anomaly_channel=("sample", np.array([CHANNELS[c] if c >= 0 else "" for c in channels])),
    )
    ds["input"] = (("sample", "time", "channel"), x, {"long_name": "sensor input"})
    ds["anomaly_mask"] = (("sample", "time"), where, {"long_name": "anomaly present"})
    return ds


def kind_auc(ds: xr.Dataset, score: xr.DataArray) -> dict[str, float]:
    """ROC AUC of a score over all anomalies ("all") and per kind, each against normal windows."""
    from .analysis.compare import roc_auc

    out = {"all": float(roc_auc(score, ds["is_anomaly"]))}
    for kind in ANOMALIES:
        keep = ds["anomaly"].isin(["normal", kind])
        out[kind] = float(roc_auc(score[keep], ds["is_anomaly"][keep]))
    return out


def _scores(ds: xr.Dataset) -> dict[str, xr.DataArray]:
    """Hidden-state scores per layer and the reconstruction error, by printed name."""
    from .analysis.core import step_change
    from .analysis.step_distance import step_distance

    held_out = step_distance(ds, ~ds["is_anomaly"]).max("time")  # out of fold
    separate = ds["step_distance"].max("time")
    jumps = step_change(ds).max(["direction", "time"])
    scores = {}
    for k in ds["layer"].values:
        scores[f"final-state distance {k}"] = ds["distance"].sel(layer=k)
        scores[f"max step distance {k}, held-out normals"] = held_out.sel(layer=k)
        scores[f"max step distance {k}, reference set"] = separate.sel(layer=k)
        scores[f"max step change {k}"] = jumps.sel(layer=k)
    scores["reconstruction error"] = ds["reconstruction_error"]
    return scores


def _top_units(ranked: xr.Dataset, n: int = 3) -> str:
    return ", ".join(
        f"{ranked['layer'].values[i]} u{int(ranked['unit'].values[i])} "
        f"(d={float(ranked['d'][i]):+.1f}, {ranked['magnitude'].values[i]})"
        for i in range(min(n, ranked.sizes["rank"]))
    )


def _largest_effects(path: Path, n: int = 3) -> str:
    """The units whose ablation raises the score most, from the report's saved scan."""
    with xr.open_dataset(path) as scan:
        mean = scan["mean_effect"].stack(p=["layer", "direction", "unit"]).dropna("p").load()
    order = np.argsort(-mean.values, kind="stable")[:n]
    units = ", ".join(f"{mean['layer'].values[i]} u{int(mean['unit'].values[i])} "
                      f"({float(mean.values[i]):+.3f})" for i in order)  # fmt: skip
    return f"{mean.sizes['p']} units ablated; largest rise of the reconstruction error: {units}"


def run_demo(
    out_dir: str | Path = "demo_out",
    config: DemoConfig | None = None,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Train, record, score and report; write ``acts.nc`` and ``report.html`` into ``out_dir``."""
    from . import extract  # seqacts.extract: loads the interventions serving gradients=
    from .analysis.compare import compare, distance
    from .analysis.step_distance import step_distance
    from .analysis.summary import format_table, summary_table
    from .demo_explain import STEPS, attribution_of, one_thread, pointing_game
    from .viz.report import report

    config = config or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    model = LSTMAutoencoder(len(CHANNELS), config.hidden)
    start = time.perf_counter()
    log(f"training an LSTM autoencoder ({config.hidden} units) on {config.n_train} normal windows")
    loss = train_autoencoder(
        model, sensor_windows(config.n_train, config.n_steps, rng), config, log
    )
    log(f"  trained in {time.perf_counter() - start:.1f} s, final loss {loss:.4f}")

    reference = torch.from_numpy(sensor_windows(config.n_reference, config.n_steps, rng))
    kinds = [k for k in ("normal", *ANOMALIES) for _ in range(config.n_test)]
    channels: list[int] = []
    test, where = inject_anomalies(sensor_windows(len(kinds), config.n_steps, rng), kinds, rng,
                                   channels)  # fmt: skip
    ref_ds = extract(model, reference)  # states of normal windows: the reference
    windows = torch.from_numpy(test)

    def error(y: torch.Tensor) -> torch.Tensor:  # one copy of the batch's outputs -> per window
        return ((y - windows) ** 2).mean(dim=(1, 2))

    start = time.perf_counter()
    with one_thread():
        ds = extract(model, windows, internals=True, gradients=error)
    log(f"recorded with state gradients in {time.perf_counter() - start:.1f} s")
    ds = _labelled(ds, test, kinds, where, channels)
    start = time.perf_counter()
    pointing: dict[str, float] = {}
    try:
        with one_thread():
            ds["attribution"] = attribution_of(model, windows, list(CHANNELS),
                                               ds["is_anomaly"].values)  # fmt: skip
    except MissingDependencyError as missing:
        log(f"input attribution skipped: {missing}")
    else:
        pointing = pointing_game(ds)
        log(f"integrated gradients of each window's reconstruction error ({STEPS} steps) in "
            f"{time.perf_counter() - start:.1f} s; pointing game (most attributed time x "
            "channel cell inside the injected anomaly: its channel and steps):")
        log("  " + ", ".join(f"{k} {v:.2f}" for k, v in pointing.items()))
    with torch.no_grad():
        recon = ((model(torch.from_numpy(test)) - torch.from_numpy(test)) ** 2).mean((1, 2))
    ds["reconstruction_error"] = ("sample", recon.numpy(), {"long_name": "reconstruction MSE"})
    ds["distance"] = distance(ds, ref_ds).reset_coords(drop=True)
    ds["distance"].attrs = {
        "long_name": f"Mahalanobis distance of h_n to {len(reference)} normal windows"
    }
    ds["step_distance"] = step_distance(ds, ref_ds).reset_coords(drop=True)
    ds["step_distance"].attrs["long_name"] = (
        f"Mahalanobis distance of each step's h to the steps of {len(reference)} normal windows"
    )
    path = out / "acts.nc"
    ds.to_netcdf(path)
    log(f"recorded {len(kinds)} held-out windows with internals -> {path} "
        f"({path.stat().st_size / 1e6:.1f} MB)\n")  # fmt: skip
    log(summary_table(ds))

    scores = _scores(ds)
    aucs = {name: kind_auc(ds, score) for name, score in scores.items()}
    rows = [[name, f"{a['all']:.3f}", *[f"{a[k]:.2f}" for k in ANOMALIES]]
            for name, a in aucs.items()]  # fmt: skip
    log(f"\nROC AUC, anomalous vs normal windows ({config.n_test} of each kind; 1 = perfect):")
    log(format_table(["score", "all", *ANOMALIES], rows))
    whole = compare(ds, "is_anomaly")
    log(f"\nunits whose mean over the window differs most: {_top_units(whole)}")
    local = compare(ds, "anomaly", where="anomaly_mask", feature="deviation")
    log("units that leave their normal range at the anomalous steps (Cohen's d of\n"
        "|h - normal mean| / normal std vs the same steps of normal windows):")  # fmt: skip
    for kind in ANOMALIES:
        mine = local.isel(rank=np.flatnonzero(local["level"].values == kind))
        log(f"  {kind:<12} {_top_units(mine)}")
    start = time.perf_counter()
    rep = report(ds, out, reference=ref_ds, kinds="anomaly", model=model, inputs=windows,
                 score=error, title="seqacts demo: LSTM autoencoder on sensor data")  # fmt: skip
    log(f"\nreport with an ablation scan of the units it ranks, in {time.perf_counter() - start:.1f} s")
    log(_largest_effects(out / "ablation.nc"))
    log(f"report: {rep}")
    auc = {str(k): aucs[f"final-state distance {k}"]["all"] for k in ds["layer"].values}
    return DemoResult(dataset=path, report=rep, auc=auc,
                      reconstruction_auc=aucs["reconstruction error"]["all"], kind_auc=aucs,
                      pointing=pointing)  # fmt: skip
