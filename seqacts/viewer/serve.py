"""``seqacts.view(ds)`` and ``seqacts view PATH``: open a recording and serve the app.

The server listens on the loopback address unless told otherwise (``--address``): a recording
is the user's data, and the app has no login. The port is checked before anything is built, so
a port in use is a one-line error.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CLIError, IncompleteStreamWarning
from ..io.lock import describe, lock_holder

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["LOOPBACK", "add_arguments", "check_port", "cmd_view", "view"]

LOOPBACK = "127.0.0.1"


def check_port(address: str, port: int) -> int:
    """Bind ``(address, port)`` once to see it is free; ``port=0`` picks a free one."""
    if not 0 <= port <= 65535:
        raise CLIError(f"--port: expected 0..65535, got {port}")
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as sock:
        try:
            sock.bind((address, port))
        except OSError as err:
            if port and err.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise CLIError(f"--port: port {port} on {address} is in use; pass another "
                               "--port (0 picks a free one)") from err  # fmt: skip
            raise CLIError(f"--address: cannot listen on {address} ({err.strerror}); pass an "
                           f"address of this machine, e.g. {LOOPBACK}") from err  # fmt: skip
        return int(sock.getsockname()[1])


def _app(ds: xr.Dataset, title: str, notice: str | None, **options: Any) -> Any:
    import panel as pn

    from .app import ViewerApp
    from .data import Explorer

    pn.extension("tabulator", notifications=False)
    explorer = Explorer(ds, **options)
    return explorer, lambda: ViewerApp(explorer, title=title, notice=notice).layout


def view(
    ds: xr.Dataset,
    *,
    group: str | None = None,
    score: str | None = None,
    var: str = "h",
    serve: bool = False,
    port: int = 5006,
    address: str = LOOPBACK,
) -> Any:
    """The ``seqacts view`` app for a dataset: inline in a notebook, or served.

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset with ``h``, eager or opened lazily (``seqacts.open_dataset``).
    group : str, optional
        A label along ``sample`` that colours and filters the windows (default: ``anomaly``,
        ``is_anomaly``, ``label`` or ``group`` when present).
    score : str, optional
        The per-sample score the windows table is sorted by (default: the first one).
    var : str, default "h"
        The per-step variable drawn as each layer's unit x time heatmap.
    serve : bool, default False
        Start a server (and open a browser tab) instead of returning the page.
    port, address : int, str
        Where to serve; the loopback address by default.

    Returns
    -------
    panel.viewable.Viewable or panel.io.threads.StoppableThread
        The page (a Panel layout, shown inline by Jupyter), or with ``serve=True`` the thread
        running the server (``.stop()`` ends it).
    """
    import panel as pn

    _, page = _app(ds, "dataset", None, group=group, score=score, var=var)
    if not serve:
        return page()
    port = check_port(address, port)
    return pn.serve(page, port=port, address=address, show=True, threaded=True,
                    websocket_origin=[f"{address}:{port}", f"localhost:{port}"],
                    title="seqacts view")  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``seqacts view``."""
    p.add_argument("file", metavar="PATH", help="a recording (.nc) or a shard directory")
    p.add_argument("--port", type=int, default=5006, help="port to serve on (default 5006; 0: "
                   "any free port)")  # fmt: skip
    p.add_argument("--address", default=LOOPBACK, help=f"address to listen on (default {LOOPBACK},"
                   " this machine only)")  # fmt: skip
    p.add_argument("--group", help="label along sample that colours and filters the windows")
    p.add_argument("--score", help="per-sample score to sort the windows by")
    p.add_argument("--var", default="h", help="per-step variable of the heatmaps (default h)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")


def cmd_view(args: argparse.Namespace) -> int:
    """Check everything that can be wrong, then serve until interrupted."""
    from ..inputs import open_acts

    port = check_port(args.address, args.port)
    holder = lock_holder(Path(args.file)) if Path(args.file).is_file() else None
    busy = None
    if holder is not None and "netCDF4" not in sys.modules:
        # A writer holds HDF5's file lock; its committed batches are readable without it
        # (seqacts commits a batch only once its data is synced). HDF5 reads this setting
        # when it loads, so it is set before anything opens a netCDF file.
        busy = describe(holder)
        os.environ["HDF5_USE_FILE_LOCKING"] = "FALSE"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IncompleteStreamWarning)
        ds = open_acts(args.file, "PATH")
    notice = None
    if busy is not None or any(issubclass(w.category, IncompleteStreamWarning) for w in caught):
        who = f"being written by {busy}" if busy else "unfinished or still being written"
        notice = (f"{args.file} is {who}: showing its {ds.sizes['sample']} committed samples "
                  "(restart the viewer to see later ones)")  # fmt: skip
        print(f"seqacts view: note: {notice}", file=sys.stderr)
    try:
        import panel as pn
    except ImportError as err:
        raise CLIError("view: needs the viewer's libraries; pip install 'seqacts[view]'") from err
    explorer, page = _app(ds, Path(args.file).name, notice, group=args.group, score=args.score,
                          var=args.var)  # fmt: skip
    explorer.table  # noqa: B018 - the windows table is built before the first page is served
    # match's default thresholds take a few reads of each layer: start them before any brush
    threading.Thread(target=lambda: [explorer.thresholds(name) for name in explorer.layers],
                     daemon=True).start()  # fmt: skip
    url = f"http://{args.address if ':' not in args.address else f'[{args.address}]'}:{port}/"
    print(f"seqacts view: serving {args.file} ({ds.sizes['sample']} windows) at {url} "
          "(Ctrl-C to stop)", flush=True)  # fmt: skip
    origins = [f"{args.address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    pn.serve(page, port=port, address=args.address, show=not args.no_browser,
             websocket_origin=origins, title="seqacts view", print_url=False)  # fmt: skip
    return 0
