import copy
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import META, PROCESSED, RAW, SHARED_MEDMNIST, needs_real_organamnist
from ssmvit.config import resolve
from ssmvit.datasets import channel_mean_std, fetch_raw, load_processed, official_url_md5, preprocess, raster_scan, resize_uint8
from ssmvit.errors import UserError
from ssmvit.fileio import md5sum, write_npz


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    """Serve a folder on 127.0.0.1 (a stand-in for a MedMNIST mirror)."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = lambda *a, **k: _Handler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_official_urls_and_md5_come_from_medmnist():
    url, md5 = official_url_md5("organamnist", 28)
    assert url.startswith("https://zenodo.org/") and "organamnist.npz" in url
    assert md5 == "68e3f8846a6bd62f0c9bf841c0d9eacc"
    url64, md5_64 = official_url_md5("pathmnist", 64)
    assert "pathmnist_64.npz" in url64 and len(md5_64) == 32


def test_local_root_with_right_md5_is_used_without_network(tiny_cfg, in_tmp):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["data"]["mirror_url"] = "http://127.0.0.1:9/never-contacted"
    info = fetch_raw(cfg, "organamnist", 28)
    assert Path(info["path"]) == RAW("organamnist", 28)
    assert md5sum(info["path"]) == info["md5"]
    assert info["official_md5"] is False  # synthetic data are marked as such
    assert info["origin"].endswith("organamnist.npz")


def test_env_var_overrides_config_root(tiny_cfg, in_tmp, monkeypatch, tmp_path):
    cfg = copy.deepcopy(tiny_cfg)
    root = Path(cfg["data"]["local_root"])
    cfg["data"]["local_root"] = str(tmp_path / "nowhere")
    cfg["data"]["mirror_url"] = "http://127.0.0.1:9/"
    cfg["data"]["download_retries"] = 1
    monkeypatch.setenv("MEDMNIST_ROOT", str(root))
    assert fetch_raw(cfg, "organamnist", 28)["origin"] == str(root / "organamnist.npz")


def test_local_file_with_wrong_md5_is_refused(tiny_cfg, in_tmp, tmp_path):
    cfg = copy.deepcopy(tiny_cfg)
    bad_root = tmp_path / "bad_root"
    bad_root.mkdir()
    src = Path(cfg["data"]["local_root"]) / "organamnist.npz"
    (bad_root / "organamnist.npz").write_bytes(src.read_bytes()[:1000])  # truncated
    cfg["data"]["local_root"] = str(bad_root)
    with pytest.raises(UserError) as exc:
        fetch_raw(cfg, "organamnist", 28)
    msg = str(exc.value)
    assert cfg["data"]["checksums"]["organamnist.npz"] in msg and "md5" in msg and "delete it" in msg
    assert not RAW("organamnist", 28).exists()


def test_download_from_mirror_checks_md5(tiny_cfg, in_tmp, http_root):
    root, url = http_root
    cfg = copy.deepcopy(tiny_cfg)
    src = Path(cfg["data"]["local_root"]) / "bloodmnist.npz"
    (root / "bloodmnist.npz").write_bytes(src.read_bytes())
    cfg["data"]["local_root"] = None
    cfg["data"]["mirror_url"] = url
    info = fetch_raw(cfg, "bloodmnist", 28)
    assert info["origin"] == f"{url}/bloodmnist.npz"
    assert md5sum(RAW("bloodmnist", 28)) == cfg["data"]["checksums"]["bloodmnist.npz"]


def test_corrupted_download_is_never_left_under_final_name(tiny_cfg, in_tmp, http_root):
    root, url = http_root
    cfg = copy.deepcopy(tiny_cfg)
    (root / "bloodmnist.npz").write_bytes(b"not the file")
    cfg["data"].update(local_root=None, mirror_url=url, download_retries=2)
    with pytest.raises(UserError) as exc:
        fetch_raw(cfg, "bloodmnist", 28)
    msg = str(exc.value)
    assert "bloodmnist.npz" in msg and url in msg and cfg["data"]["checksums"]["bloodmnist.npz"] in msg
    assert "after 2 attempts" in msg
    raw_dir = RAW("bloodmnist", 28).parent
    assert not raw_dir.exists() or list(raw_dir.iterdir()) == []


def test_channel_mean_std_matches_float64_over_chunks_without_rounding_drift():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 3, 5, 4), dtype=np.uint8)
    x = images.astype(np.float64) / 255
    for chunk in (1, 3, 7, 100):  # chunk boundaries inside, at and past the split's end give the same sums
        mean, std = channel_mean_std(images, chunk=chunk)
        assert np.allclose(mean, x.mean(axis=(0, 2, 3)), rtol=0, atol=1e-15)
        assert np.allclose(std, x.std(axis=(0, 2, 3)), rtol=0, atol=1e-15)
    # exact cases: a constant channel has std 0 exactly (no negative variance from cancellation), and half 0 /
    # half 255 has mean 0.5 and std 0.5
    flat = np.zeros((4, 2, 2, 2), dtype=np.uint8)
    flat[:, 0] = 200
    flat[:2, 1] = 255
    mean, std = channel_mean_std(flat, chunk=3)
    assert mean == [200 / 255, 0.5] and std == [0.0, 0.5]


def test_preprocess_benchmark_runs_and_checks_the_float32_constants():
    import subprocess
    import sys

    from conftest import REPO

    r = subprocess.run([sys.executable, str(REPO / "bench" / "bench_preprocess.py"), "--shape", "50", "3", "8", "8"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "float32 constants identical" in r.stdout and "speed-up" in r.stdout


def test_preprocess_official_size_and_metadata(tiny_cfg, in_tmp):
    fetch_raw(tiny_cfg, "bloodmnist", 28)
    meta = preprocess(tiny_cfg, "bloodmnist", 28, RAW("bloodmnist", 28))
    arrays, meta2 = load_processed(PROCESSED("bloodmnist", 28))
    assert meta == meta2
    assert arrays["train_images"].shape == (256, 3, 28, 28) and arrays["train_images"].dtype == np.uint8
    assert arrays["test_labels"].shape == (128,) and arrays["test_labels"].dtype == np.int64
    assert meta["split_sizes"] == {"train": 256, "val": 64, "test": 128}
    assert meta["upsampled"] is False and meta["source_size"] == 28 and meta["n_classes"] == 8
    assert meta["class_names"][0] == "basophil" and meta["official_md5"] is False
    # mean/std are those of the train split, per channel, on the 0..1 scale
    x = arrays["train_images"].astype(np.float64) / 255
    assert np.allclose(meta["mean"], x.mean(axis=(0, 2, 3))) and np.allclose(meta["std"], x.std(axis=(0, 2, 3)))
    # NCHW: the RGB channels of the official NHWC file land in axis 1
    raw = np.load(RAW("bloodmnist", 28))
    assert np.array_equal(arrays["train_images"][5, 2], raw["train_images"][5, :, :, 2])


def test_preprocess_upsamples_when_configured(tiny_cfg, in_tmp):
    cfg = copy.deepcopy(tiny_cfg)
    cfg["data"]["upsample_from"] = {64: 28}
    fetch_raw(cfg, "organamnist", 28)
    meta = preprocess(cfg, "organamnist", 64, RAW("organamnist", 28))
    arrays, _ = load_processed(PROCESSED("organamnist", 64))
    assert arrays["val_images"].shape == (64, 1, 64, 64)
    assert meta["upsampled"] is True and meta["source_size"] == 28 and meta["source_file"] == "organamnist.npz"
    assert "bilinear" in meta["resize_method"]
    # Without the mapping, 64 comes from the official 64 file.
    fetch_raw(tiny_cfg, "organamnist", 64)
    meta64 = preprocess(tiny_cfg, "organamnist", 64, RAW("organamnist", 64))
    assert meta64["upsampled"] is False and meta64["source_file"] == "organamnist_64.npz"


def test_resize_is_bilinear_and_keeps_constant_images():
    const = np.full((2, 1, 28, 28), 77, np.uint8)
    assert (resize_uint8(const, 64) == 77).all()
    ramp = np.tile(np.arange(28, dtype=np.uint8) * 9, (1, 1, 28, 1))
    up = resize_uint8(ramp, 56)[0, 0, 0]
    assert (np.diff(up.astype(int)) >= 0).all()  # monotone ramp stays monotone


def _write_layout(path, **override):
    arrays = {f"{s}_images": np.zeros((4, 28, 28), np.uint8) for s in ("train", "val", "test")}
    arrays.update({f"{s}_labels": np.zeros((4, 1), np.uint8) for s in ("train", "val", "test")})
    arrays.update(override)
    for k in [k for k, v in arrays.items() if v is None]:
        del arrays[k]
    write_npz(path, **arrays)
    return md5sum(path)


@pytest.mark.parametrize("override, needle", [
    ({"val_labels": None}, "lacks key(s) val_labels"),
    ({"train_images": np.zeros((4, 32, 32), np.uint8)}, "has shape (4, 32, 32), expected (N, 28, 28)"),
    ({"test_labels": np.full((4, 1), 11, np.uint8)}, "outside 0..10"),
    ({"train_images": np.zeros((4, 28, 28), np.float32)}, "dtype float32"),
])
def test_bad_data_files_are_refused_before_writing(tiny_cfg, in_tmp, override, needle):
    raw = Path("bad.npz")
    md5 = _write_layout(raw, **override)
    cfg = copy.deepcopy(tiny_cfg)
    cfg["data"]["checksums"] = {"organamnist.npz": md5}
    with pytest.raises(UserError) as exc:
        preprocess(cfg, "organamnist", 28, raw)
    assert needle in str(exc.value) and "\n" not in str(exc.value)
    assert not PROCESSED("organamnist", 28).exists()
    assert not META("organamnist", 28).exists()


def test_preprocess_refuses_raw_with_wrong_md5(tiny_cfg, in_tmp):
    raw = Path("x.npz")
    _write_layout(raw)
    with pytest.raises(UserError, match="has md5 .* expected"):
        preprocess(tiny_cfg, "organamnist", 28, raw)


def test_npz_with_pickled_objects_is_refused(tiny_cfg, in_tmp):
    raw = Path("obj.npz")
    np.savez(raw, train_images=np.array([{"a": 1}], dtype=object))
    cfg = copy.deepcopy(tiny_cfg)
    cfg["data"]["checksums"] = {"organamnist.npz": md5sum(raw)}
    with pytest.raises(UserError, match="without pickle"):
        preprocess(cfg, "organamnist", 28, raw)


def test_raster_scan_is_row_major():
    x = torch.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    seq = raster_scan(x)
    assert seq.shape == (2, 20, 3)
    b, c, row, col = 1, 2, 3, 1
    assert seq[b, row * 5 + col, c] == x[b, c, row, col]
    # consecutive sequence positions walk along a row, then to the next row
    assert torch.equal(seq[0, :5, 0], x[0, 0, 0, :]) and torch.equal(seq[0, 5:10, 0], x[0, 0, 1, :])


@needs_real_organamnist
def test_real_organamnist_is_official_and_preprocesses(in_tmp, monkeypatch):
    monkeypatch.setenv("MEDMNIST_ROOT", str(SHARED_MEDMNIST))
    cfg = resolve({"outdir": "."})
    info = fetch_raw(cfg, "organamnist", 28)
    assert info["official_md5"] is True and info["md5"] == "68e3f8846a6bd62f0c9bf841c0d9eacc"
    meta = preprocess(cfg, "organamnist", 28, info["path"])
    assert meta["split_sizes"] == {"train": 34561, "val": 6491, "test": 17778}
    assert meta["n_classes"] == 11 and meta["official_md5"] is True
    assert 0.3 < meta["mean"][0] < 0.6


def test_every_2d_single_label_medmnist_dataset_is_known_at_every_size():
    from ssmvit.catalog import SIZES, check_dataset, describe, known_datasets

    names = known_datasets()
    assert {"organamnist", "organcmnist", "organsmnist", "dermamnist", "pathmnist", "bloodmnist"} <= set(names)
    assert "chestmnist" not in names and not any(n.endswith("3d") for n in names)
    for name in names:
        d = describe(name)
        assert d["n_classes"] >= 2 and d["n_channels"] in (1, 3) and d["title"].lower() == name
        for size in SIZES:
            url, md5 = official_url_md5(name, size)
            assert url.startswith("https://") and len(md5) == 32
    with pytest.raises(UserError, match="chestmnist is multi-label, binary-class .* single-label classifiers"):
        check_dataset("chestmnist")
    with pytest.raises(UserError, match="did you mean 'organamnist'"):
        check_dataset("organmnist")


def test_upsampled_labels_for_any_dataset(tiny_cfg, in_tmp, tmp_path):
    """organcmnist (not one of the study's) at 64 made from its 28 file: preprocessed and labelled as upsampled."""
    from ssmvit.catalog import dataset_label, official_name
    from ssmvit.plots import res_label
    from ssmvit.synthetic import make_synthetic_medmnist

    root = tmp_path / "root_c"
    _, md5 = make_synthetic_medmnist("organcmnist", 28, root / official_name("organcmnist", 28))
    cfg = copy.deepcopy(tiny_cfg)
    cfg["data"].update(local_root=str(root), checksums={"organcmnist.npz": md5}, upsample_from={64: 28})
    fetch_raw(cfg, "organcmnist", 64)
    meta = preprocess(cfg, "organcmnist", 64)
    assert meta["upsampled"] and meta["source_size"] == 28 and meta["title"] == "OrganCMNIST"
    assert dataset_label("organcmnist") == "OrganCMNIST"
    assert "upsampled from 28" in res_label(64, {"upsampled": True, "source_size": 28})
