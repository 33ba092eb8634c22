"""Metadata schema, readers (STAC, BigEarthNet, fMoW, AtomSet) and the metadata encoders."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import torch
from conftest import shared_data_path
from hypothesis import given, settings
from hypothesis import strategies as st

from atomizer.errors import EncoderError, ReaderError
from atomizer.pretrain.metadata import (
    FIELD_NAMES,
    MetadataRecord,
    metadata_from_atomset,
    metadata_from_bigearthnet_json,
    metadata_from_fmow_json,
    metadata_from_stac_item,
    metadata_to_text,
    utm_zone_centre,
)
from atomizer.pretrain.metadata_encoders import (
    CharTokenizer,
    TabularMetadataEncoder,
    TextMetadataEncoder,
    fixed_metadata_features,
    lonlat_to_unit_xyz,
)

#: An fMoW-rgb metadata record (field names and values as in the public fMoW JSON files).
FMOW = {
    "gsd": 0.468074887991,
    "img_width": 977,
    "img_height": 663,
    "country_code": "CHE",
    "cloud_cover": 0,
    "timestamp": "2012-04-02T10:32:22Z",
    "utm": "32T",
    "sensor_platform_name": "GEOEYE01",
    "off_nadir_angle_dbl": 21.8978748322,
    "target_azimuth_dbl": 31.2082061768,
    "sun_azimuth_dbl": 159.207946777,
    "sun_elevation_dbl": 46.1834640503,
    "scan_direction": "Reverse",
    "bounding_boxes": [
        {
            "ID": 47768,
            "box": [466, 299, 72, 60],
            "category": "fountain",
            "raw_location": "POLYGON ((8.58083601179 47.4475160925, 8.58532758821 47.4475160925, "
            "8.58532758821 47.4505628631, 8.58083601179 47.4505628631, "
            "8.58083601179 47.4475160925))",
        }
    ],
}

#: A Sentinel-2 L2A STAC item (Earth Search layout, trimmed).
STAC_ITEM = {
    "type": "Feature",
    "stac_version": "1.0.0",
    "id": "S2A_29UNU_20221005_0_L2A",
    "bbox": [-9.0, 52.3, -7.3, 53.3],
    "geometry": {
        "type": "Polygon",
        "coordinates": [[[-9.0, 52.3], [-7.3, 52.3], [-7.3, 53.3], [-9.0, 53.3], [-9.0, 52.3]]],
    },
    "properties": {
        "datetime": "2022-10-05T11:56:49.581Z",
        "platform": "sentinel-2a",
        "constellation": "sentinel-2",
        "eo:cloud_cover": 59.77,
        "view:sun_azimuth": 172.84,
        "s2:mean_solar_zenith": 57.82,
    },
    "assets": {"red": {"href": "B04.tif", "gsd": 10}, "coastal": {"href": "B01.tif", "gsd": 60}},
    "links": [],
}


def test_fmow_reader() -> None:
    r = metadata_from_fmow_json(FMOW)
    assert r.gsd_m == pytest.approx(0.468, abs=1e-3)
    assert r.date == dt.date(2012, 4, 2) and r.time_utc == dt.time(10, 32, 22)
    assert r.lon == pytest.approx(8.5831, abs=1e-3) and r.lat == pytest.approx(47.449, abs=1e-3)
    assert r.sensor_id == "geoeye01"
    assert (r.off_nadir_deg, r.view_azimuth_deg) == pytest.approx((21.898, 31.208), abs=1e-3)
    assert (r.sun_azimuth_deg, r.sun_elevation_deg, r.cloud_cover_pct) == pytest.approx(
        (159.208, 46.183, 0.0), abs=1e-3
    )
    # only the UTM zone: the zone's centre (coarse)
    coarse = metadata_from_fmow_json({"gsd": 1.0, "utm": "32T"})
    assert (coarse.lon, coarse.lat) == (9.0, 44.0) and coarse.date is None  # band T: 40-48 N
    assert utm_zone_centre("99Z") is None


def test_fmow_reader_from_file_and_bad_files(tmp_path) -> None:
    p = tmp_path / "a.json"
    p.write_text(json.dumps(FMOW))
    assert metadata_from_fmow_json(p).sensor_id == "geoeye01"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ReaderError, match="invalid JSON"):
        metadata_from_fmow_json(bad)
    with pytest.raises(ReaderError, match="no such"):
        metadata_from_fmow_json(tmp_path / "missing.json")
    with pytest.raises(ReaderError, match="timestamp"):
        metadata_from_fmow_json({"timestamp": "yesterday"})


def test_stac_reader_with_pystac() -> None:
    import pystac

    for item in (STAC_ITEM, pystac.Item.from_dict(STAC_ITEM)):
        r = metadata_from_stac_item(item)
        assert r.gsd_m == 10.0  # the finest asset gsd
        assert (r.lon, r.lat) == pytest.approx((-8.15, 52.8))
        assert r.date == dt.date(2022, 10, 5) and r.time_utc.hour == 11
        assert r.sensor_id == "sentinel2a" and r.cloud_cover_pct == pytest.approx(59.77)
        assert r.sun_elevation_deg == pytest.approx(90 - 57.82)
        assert r.off_nadir_deg is None
    assert metadata_from_stac_item(STAC_ITEM, gsd_m=120.0).gsd_m == 120.0
    across = metadata_from_stac_item({**STAC_ITEM, "bbox": [179.0, -17.0, -179.0, -16.0]})
    assert abs(across.lon) == pytest.approx(180.0) and across.lat == pytest.approx(-16.5)


@pytest.mark.data
def test_bigearthnet_reader_on_real_patch() -> None:
    folder = shared_data_path("bigearthnet_s2_examples", "S2A_MSIL2A_20170613T101031_87_48")
    r = metadata_from_bigearthnet_json(next(folder.glob("*_labels_metadata.json")))
    # UTM 33N, easting ~405 km, northing ~5342 km: southern Germany / Austria
    assert r.lon == pytest.approx(13.73, abs=0.05) and r.lat == pytest.approx(48.22, abs=0.05)
    assert r.date == dt.date(2017, 6, 13) and r.time_utc == dt.time(10, 10, 31)
    assert r.sensor_id == "sentinel2a" and r.gsd_m == 10.0
    assert r.sun_azimuth_deg is None and r.cloud_cover_pct is None


def test_record_validation_and_json_round_trip() -> None:
    with pytest.raises(ReaderError, match="lat=95"):
        MetadataRecord(lon=0.0, lat=95.0)
    with pytest.raises(ReaderError, match="only one of lon / lat"):
        MetadataRecord(lon=3.0)
    assert MetadataRecord(gsd_m=float("nan")).gsd_m is None
    assert MetadataRecord(sensor_id="  ").sensor_id is None
    assert MetadataRecord().present_fields() == []
    r = metadata_from_fmow_json(FMOW)
    assert MetadataRecord.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert set(r.present_fields()) == set(FIELD_NAMES)
    with pytest.raises(ReaderError, match="unknown metadata keys"):
        MetadataRecord.from_json({"gsd": 3})


def test_metadata_from_atomset_and_text() -> None:
    from atomizer.atoms.atomset import AtomSet, SceneMeta
    from atomizer.sensors.spec import Band

    band = Band(name="B04", center_wavelength_nm=665.0, fwhm_nm=30.0, gsd_m=10.0)
    scene = SceneMeta(
        sensor_id="sentinel2a",
        datetime=dt.datetime(2020, 1, 2, 3, 4, tzinfo=dt.timezone.utc),
        lon=11.3,
        lat=48.1,
        extra={"sun_elevation_deg": 20.0},
    )
    atoms = AtomSet(value=[0.1], band=[0], x=[5.0], y=[5.0], bands=(band,), scene=scene)
    r = metadata_from_atomset(atoms)
    assert (r.gsd_m, r.sensor_id, r.sun_elevation_deg) == (10.0, "sentinel2a", 20.0)
    text = metadata_to_text(r)
    assert text == (
        "gsd 10.0 m, date 2020-01-02, time 03:04 utc, lat 48.10 lon 11.30, sensor sentinel2a, "
        "sun elevation 20 deg"
    )
    assert metadata_to_text(MetadataRecord()) == ""


def test_char_tokenizer_round_trip() -> None:
    tok = CharTokenizer()
    ids, mask = tok.encode(["gsd 10.0 m", "é"], max_length=16)
    assert ids.shape == (2, 17) and ids[0, 0] == tok.CLS
    assert tok.decode(ids[0].tolist()) == "gsd 10.0 m"
    assert ids[1, 1] == tok.UNK and int(mask[1].sum()) == 2


@st.composite
def records(draw) -> MetadataRecord:
    """Records with a random subset of fields present."""
    has = {f: draw(st.booleans()) for f in FIELD_NAMES}
    f = st.floats
    return MetadataRecord(
        gsd_m=draw(f(0.3, 1000)) if has["gsd_m"] else None,
        date=draw(st.dates(dt.date(1980, 1, 1), dt.date(2040, 1, 1))) if has["date"] else None,
        time_utc=draw(st.times()) if has["time_utc"] else None,
        lon=draw(f(-180, 180)) if has["location"] else None,
        lat=draw(f(-90, 90)) if has["location"] else None,
        sensor_id=draw(st.sampled_from(["sentinel2a", "landsat8", "x"]))
        if has["sensor_id"]
        else None,
        off_nadir_deg=draw(f(0, 45)) if has["off_nadir_deg"] else None,
        view_azimuth_deg=draw(f(0, 360)) if has["view_azimuth_deg"] else None,
        sun_azimuth_deg=draw(f(0, 360)) if has["sun_azimuth_deg"] else None,
        sun_elevation_deg=draw(f(-10, 90)) if has["sun_elevation_deg"] else None,
        cloud_cover_pct=draw(f(0, 100)) if has["cloud_cover_pct"] else None,
    )


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one torch thread avoids waiting for a second one on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def encoders():
    torch.manual_seed(0)
    tab = TabularMetadataEncoder(width=16, depth=1, heads=2).eval()
    txt = TextMetadataEncoder(width=16, depth=1, heads=2, max_length=64).eval()
    return tab, txt


@settings(max_examples=12, deadline=None)
@given(st.lists(records(), min_size=1, max_size=4))
def test_encoders_accept_any_missing_fields(encoders, recs) -> None:
    tab, txt = encoders
    with torch.no_grad():
        for enc in (tab, txt):
            out = enc(recs)
            assert out.shape == (len(recs), 16) and torch.isfinite(out).all()
            # a sample's features do not depend on the rest of the batch
            torch.testing.assert_close(enc(recs[:1]), out[:1], rtol=1e-4, atol=1e-5)
    assert np.isfinite(fixed_metadata_features(recs)).all()


def test_missing_embedding_is_used(encoders) -> None:
    tab, _ = encoders
    with torch.no_grad():
        empty = tab([MetadataRecord(), MetadataRecord()])
        torch.testing.assert_close(empty[0], empty[1])
        one = tab([MetadataRecord(gsd_m=10.0), MetadataRecord(gsd_m=500.0), MetadataRecord()])
    assert not torch.allclose(one[0], one[1]) and not torch.allclose(one[0], one[2])
    # the missing vector is a learned parameter that receives gradient
    tab.zero_grad()
    out = tab([MetadataRecord(), MetadataRecord(gsd_m=10.0)])
    # a fixed random read-out: a plain sum of normalised features can have zero gradient
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (out * weight).sum().backward()
    assert tab.missing_embedding.grad is not None and tab.missing_embedding.grad.abs().sum() > 0


def test_encoder_params_are_strict_and_registered(host) -> None:
    with pytest.raises(EncoderError, match="not divisible"):
        TabularMetadataEncoder(width=10, heads=3)
    with pytest.raises(EncoderError, match="unknown metadata fields"):
        TabularMetadataEncoder(fields=["gsd_m", "colour"])
    with pytest.raises(EncoderError, match="vocab: unknown key 'vocab'"):
        TextMetadataEncoder(vocab="bert")
    assert {"tabular", "text"} <= set(host.metadata_encoders.names())
    enc = host.metadata_encoders.get("tabular")(
        width=8, depth=1, heads=2, fields=["gsd_m", "location"]
    )
    assert enc.token_names == ["gsd", "location"] and enc.out_dim == 8


def test_sphere_encoding_is_continuous_across_the_date_line() -> None:
    a = lonlat_to_unit_xyz(np.array(179.9), np.array(10.0))
    b = lonlat_to_unit_xyz(np.array(-179.9), np.array(10.0))
    assert np.linalg.norm(a - b) < 0.01 and np.linalg.norm(a) == pytest.approx(1.0)


# --- each source field, dropped ---------------------------------------------------------------------
#: A BigEarthNet-S2 ``*_labels_metadata.json`` (layout of the public files, labels trimmed).
BIGEARTHNET = {
    "labels": ["Non-irrigated arable land"],
    "coordinates": {"ulx": 404400, "uly": 5342400, "lrx": 405600, "lry": 5341200},
    "projection": "EPSG:32633",
    "tile_source": "S2A_MSIL1C_20170613T101031_N0205_R022_T33UUP_20170613T101608.SAFE",
    "acquisition_date": "2017-06-13 10:10:31",
}
#: The STAC item with every field the reader maps (view angles added).
STAC_FULL = {
    **STAC_ITEM,
    "properties": {**STAC_ITEM["properties"], "view:off_nadir": 4.5, "view:azimuth": 101.0},
}
READERS = {
    "stac": (metadata_from_stac_item, STAC_FULL),
    "bigearthnet": (metadata_from_bigearthnet_json, BIGEARTHNET),
    "fmow": (metadata_from_fmow_json, FMOW),
}
#: (source, keys to drop ("a.b" = key b inside a), record fields that become None).
DROPS = [
    ("stac", ["properties.datetime"], ["date", "time_utc"]),
    ("stac", ["bbox", "geometry"], ["lon", "lat"]),
    ("stac", ["assets"], ["gsd_m"]),
    ("stac", ["properties.platform", "properties.constellation"], ["sensor_id"]),
    ("stac", ["properties.view:off_nadir"], ["off_nadir_deg"]),
    ("stac", ["properties.view:azimuth"], ["view_azimuth_deg"]),
    ("stac", ["properties.view:sun_azimuth"], ["sun_azimuth_deg"]),
    ("stac", ["properties.s2:mean_solar_zenith"], ["sun_elevation_deg"]),
    ("stac", ["properties.eo:cloud_cover"], ["cloud_cover_pct"]),
    ("bigearthnet", ["acquisition_date"], ["date", "time_utc"]),
    ("bigearthnet", ["coordinates"], ["lon", "lat"]),
    ("bigearthnet", ["projection"], ["lon", "lat"]),
    ("bigearthnet", ["tile_source"], ["sensor_id"]),
    ("fmow", ["gsd"], ["gsd_m"]),
    ("fmow", ["timestamp"], ["date", "time_utc"]),
    ("fmow", ["bounding_boxes", "utm"], ["lon", "lat"]),
    ("fmow", ["sensor_platform_name"], ["sensor_id"]),
    ("fmow", ["off_nadir_angle_dbl"], ["off_nadir_deg"]),
    ("fmow", ["target_azimuth_dbl"], ["view_azimuth_deg"]),
    ("fmow", ["sun_azimuth_dbl"], ["sun_azimuth_deg"]),
    ("fmow", ["sun_elevation_dbl"], ["sun_elevation_deg"]),
    ("fmow", ["cloud_cover"], ["cloud_cover_pct"]),
]


@pytest.fixture(scope="module")
def untruncated_encoders():
    """Both metadata encoders, the text one long enough to read a full record (~180 characters)."""
    torch.manual_seed(1)
    tab = TabularMetadataEncoder(width=16, depth=1, heads=2).eval()
    txt = TextMetadataEncoder(width=16, depth=1, heads=2, max_length=256).eval()
    return tab, txt


def _without(d: dict, dotted_keys: list[str]) -> dict:
    """A deep copy of ``d`` without the keys ``dotted_keys`` (``"a.b"``: key ``b`` of ``d["a"]``)."""
    out = json.loads(json.dumps(d))
    for dotted in dotted_keys:
        *parents, last = dotted.split(".")
        node = out
        for p in parents:
            node = node[p]
        del node[last]
    return out


def test_every_record_field_is_covered_by_a_drop_case() -> None:
    record_fields = {"lon", "lat"} | set(FIELD_NAMES) - {"location"}
    assert {f for _, _, fields in DROPS for f in fields} == record_fields
    assert {source for source, _, _ in DROPS} == set(READERS)


@pytest.mark.parametrize(
    ("source", "dropped", "now_missing"), DROPS, ids=[f"{s}-{'+'.join(k)}" for s, k, _ in DROPS]
)
def test_a_dropped_source_field_becomes_none_and_still_encodes(
    untruncated_encoders, source, dropped, now_missing
) -> None:
    read, full_dict = READERS[source]
    full = read(full_dict)
    for name in now_missing:
        assert getattr(full, name) is not None, f"the {source} fixture should have {name}"
    record = read(_without(full_dict, dropped))
    for name in now_missing:
        assert getattr(record, name) is None
    # nothing else changed
    others = [f for f in ("gsd_m", "date", "time_utc", "lon", "lat", "sensor_id", "off_nadir_deg",
                          "view_azimuth_deg", "sun_azimuth_deg", "sun_elevation_deg", "cloud_cover_pct")
              if f not in now_missing]
    assert [getattr(record, f) for f in others] == [getattr(full, f) for f in others]
    with torch.no_grad():
        for enc in untruncated_encoders:
            assert metadata_to_text(record) != metadata_to_text(full)
            out = enc([full, record])
            assert out.shape == (2, enc.out_dim) and torch.isfinite(out).all()
            assert not torch.allclose(out[0], out[1]), f"{type(enc).__name__} ignored the missing field"
