"""Write this example's inputs from the real data in ../shared/data (nothing is copied):

- ``inputs/items.json``: a STAC ItemCollection of the Sentinel-2 L2A tile T29UNU (2022-10-05),
  asset hrefs pointing at the tile's JPEG 2000 files where they are;
- ``inputs/labels.geojson``: point labels drawn at random (seeded) from the tile's scene
  classification layer (SCL): vegetation, not-vegetated, water and cloud pixels, away from the edge.

    python experiments/own-data/make_inputs.py [--data ../shared/data] [--per-class 40]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

TILE = "s2_l2a_T29UNU_20221005_60m"
SCL = "T29UNU_20221005T115411_SCL_60m.jp2"
#: SCL class -> label (ESA L2A scene classification).
CLASSES = {4: "vegetation", 5: "not-vegetated", 6: "water", 9: "cloud"}
EDGE_PX = 30


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=here.parents[2] / "shared" / "data")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=here / "inputs")
    args = parser.parse_args()

    import rasterio
    from pystac import ItemCollection
    from rasterio.warp import transform

    from atomizer.readers.stac_build import sentinel2_l2a_item

    folder = args.data / TILE
    args.out.mkdir(parents=True, exist_ok=True)
    ItemCollection([sentinel2_l2a_item(folder)]).save_object(str(args.out / "items.json"))
    with rasterio.open(folder / SCL) as ds:
        scl, t, crs = ds.read(1), ds.transform, ds.crs
    rng = np.random.default_rng(args.seed)
    features = []
    inner = scl[EDGE_PX:-EDGE_PX, EDGE_PX:-EDGE_PX]
    for code, name in CLASSES.items():
        rows, cols = np.nonzero(inner == code)
        pick = np.sort(rng.choice(rows.size, size=args.per_class, replace=False))
        xs = t.c + (cols[pick] + EDGE_PX + 0.5) * t.a
        ys = t.f + (rows[pick] + EDGE_PX + 0.5) * t.e
        lons, lats = transform(crs, "EPSG:4326", xs.tolist(), ys.tolist())
        features += [{"type": "Feature", "properties": {"landcover": name},
                      "geometry": {"type": "Point", "coordinates": [lon, lat]}}
                     for lon, lat in zip(lons, lats)]
    (args.out / "labels.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    print(f"wrote {args.out / 'items.json'} (1 item) and {args.out / 'labels.geojson'} ({len(features)} labels)")


if __name__ == "__main__":
    main()
