"""Remote imagery: chips read from Cloud-Optimized GeoTIFFs over HTTP with range requests.

A threaded HTTP server with Range support runs on 127.0.0.1 in the test and serves COGs made from
the real S2 tile; it counts the bytes it sends. The build must fetch no more than twice the bytes of
the blocks its chip windows touch (never whole files).
"""

from __future__ import annotations

import json
import re
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from atomizer.datasets import build_dataset, load_dataset_spec, open_dataset
from conftest import shared_data_path
from dataset_toys import S2_FOLDER, SCL_NAME, scl_points, write_item_collection, write_points, write_spec

BANDS = ("B04", "B8A")
CHIP_M = 600.0
SIZE_PX = 768  # the COGs hold the tile's first 768 x 768 pixels (3 x 3 blocks)
RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves files with single byte ranges (what GDAL's /vsicurl/ asks for); counts bytes sent."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        m = RANGE.match(self.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
            body = data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with self.server.lock:
            self.server.sent += len(body)
            self.server.requests.append((self.path, self.headers.get("Range")))

    def do_HEAD(self) -> None:  # noqa: N802
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import rasterio

    folder = shared_data_path(*S2_FOLDER)
    root = tmp_path_factory.mktemp("www")
    for band in BANDS:
        src = folder / f"T29UNU_20221005T115411_{band}_60m.jp2"
        with rasterio.open(src) as ds:
            profile = {"driver": "COG", "dtype": ds.dtypes[0], "count": 1, "width": SIZE_PX,
                       "height": SIZE_PX, "crs": ds.crs, "transform": ds.transform, "nodata": 0,
                       "blocksize": 256, "compress": "deflate"}
            data = ds.read(1, window=((0, SIZE_PX), (0, SIZE_PX)))
        with rasterio.open(root / f"{band}.tif", "w", **profile) as out:
            out.write(data, 1)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(root)))
    server.sent, server.requests, server.lock = 0, [], threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, root, folder
    server.shutdown()
    server.server_close()


def _item(root: Path, base_url: str, item_id: str = "remote-tile"):
    import datetime as dt

    from atomizer.readers.stac_build import build_stac_item

    item = build_stac_item(item_id, {b: root / f"{b}.tif" for b in BANDS},
                           datetime=dt.datetime(2022, 10, 5, tzinfo=dt.timezone.utc))
    for key, asset in item.assets.items():
        asset.href = f"{base_url}/{key}.tif"
    return item


def _blocks_bytes(root: Path, manifest_rows) -> int:
    """Bytes of the distinct COG blocks that the chips' windows touch."""
    import rasterio
    from rasterio.warp import transform

    total = 0
    for band in BANDS:
        with rasterio.open(root / f"{band}.tif") as ds:
            bh, bw = ds.block_shapes[0]
            t = ds.transform
            blocks = set()
            for row in manifest_rows:
                (x,), (y,) = transform("EPSG:4326", ds.crs, [row["lon"]], [row["lat"]])
                c0, c1 = int((x - CHIP_M / 2 - t.c) // t.a), int((x + CHIP_M / 2 - t.c) // t.a)
                r0, r1 = int((t.f - y - CHIP_M / 2) // -t.e), int((t.f - y + CHIP_M / 2) // -t.e)
                blocks |= {(r // bh, c // bw) for r in (r0, r1) for c in (c0, c1)}
            total += sum(ds.block_size(1, i, j) for i, j in blocks)
    return total


def test_chips_from_http_cogs_fetch_only_the_blocks_they_touch(served, tmp_path):
    server, root, folder = served
    url = f"http://127.0.0.1:{server.server_address[1]}"
    write_item_collection(tmp_path / "items.json", [_item(root, url)])
    write_points(tmp_path / "labels.geojson", scl_points(folder / SCL_NAME, per_class=2, seed=3, size_px=SIZE_PX))
    spec = write_spec(tmp_path / "spec.yaml", items="items.json", sensor="sentinel2a-l2a",
                      bands=list(BANDS), labels={"path": "labels.geojson", "column": "landcover"},
                      chip_m=CHIP_M)
    with server.lock:
        server.sent, server.requests[:] = 0, []
    result = build_dataset(load_dataset_spec(spec), tmp_path / "out", workers=0)
    assert (result.n_chips, result.n_failed) == (6, 0)
    rows = json.loads((tmp_path / "out" / "manifest.json").read_text())["chips"]
    touched = _blocks_bytes(root, rows)
    whole = sum((root / f"{b}.tif").stat().st_size for b in BANDS)
    assert server.sent <= 2 * touched, (server.sent, touched, whole, server.requests)
    assert server.sent < whole / 2
    atoms, _ = open_dataset(tmp_path / "out")[0]
    assert atoms.band_names == list(BANDS) and len(atoms) == 2 * 100


def test_an_unreachable_url_is_recorded_and_skipped(served, tmp_path):
    server, root, folder = served
    good = _item(root, f"http://127.0.0.1:{server.server_address[1]}")
    dead = _item(root, "http://127.0.0.1:9/nowhere", item_id="dead")
    missing = _item(root, f"http://127.0.0.1:{server.server_address[1]}/gone", item_id="missing")  # 404
    write_item_collection(tmp_path / "items.json", [good, dead, missing])
    write_points(tmp_path / "labels.geojson", scl_points(folder / SCL_NAME, per_class=1, seed=5, size_px=SIZE_PX))
    spec = write_spec(tmp_path / "spec.yaml", items="items.json", sensor="sentinel2a-l2a",
                      bands=list(BANDS), labels={"path": "labels.geojson", "column": "landcover"},
                      chip_m=CHIP_M)
    result = build_dataset(load_dataset_spec(spec), tmp_path / "out", workers=0, max_failures=0.9)
    assert (result.n_chips, result.n_failed) == (3, 2)
    errors = [json.loads(x) for x in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["item_id"] for e in errors) == ["dead", "missing"]
    for e in errors:  # said as a network failure, not as a corrupt file
        assert "cannot fetch http://127.0.0.1:" in e["error"], e
        assert "check the URL, the network and that the server answers" in e["error"]
        assert "corrupt" not in e["error"]
