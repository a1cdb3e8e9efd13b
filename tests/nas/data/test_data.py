"""Readers (tiny files written here in each format), transforms and the batch samplers."""

import hashlib
import pickle
import random
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from nas.data import (
    CifarSource,
    DataError,
    FolderSource,
    ImageDataset,
    MultiScaleSampler,
    ProceduralSource,
    SingleScaleSampler,
    batch_sizes,
    collate,
    cvnets_sizes,
    download_cifar,
)
from nas.data.transforms import random_resized_crop_box


def test_cvnets_sizes_and_the_reference_batch_sizes():
    assert cvnets_sizes() == (160, 192, 256, 288, 320)
    sizes = cvnets_sizes()
    # Reference section 5.4, b0 = 128: per GPU with 8 GPUs, and on one GPU.
    assert batch_sizes(sizes, 256, 128, "v0.1", n_gpus=8) == {160: 328, 192: 224, 256: 128,
                                                              288: 128, 320: 128}
    assert list(batch_sizes(sizes, 256, 128, "v0.1").values()) == [327, 227, 128, 128, 128]
    assert list(batch_sizes(sizes, 256, 128, "v0.2", n_gpus=8).values()) == [328, 224, 128, 104, 80]
    assert list(batch_sizes(sizes, 256, 128, "v0.2").values()) == [327, 227, 128, 101, 81]
    # The paper: b is the batch at the largest size; b_t = H_n W_n b / (H_t W_t).
    assert batch_sizes(sizes, 256, 128, "paper") == {160: 512, 192: 355, 256: 200, 288: 158,
                                                     320: 128}
    with pytest.raises(ValueError, match="sampler rule 'v9'"):
        batch_sizes(sizes, 256, 128, "v9")


def test_multiscale_sampler_covers_the_epoch_and_is_seeded():
    sampler = MultiScaleSampler(1000, sizes=(16, 24, 32), base_size=32, base_batch=20, seed=3)
    batches = list(sampler)
    seen = [i for b in batches for i, *_ in b]
    assert set(seen) == set(range(1000)) and len(seen) < 1000 + 45  # the last batch wraps
    for b in batches:
        sizes = {(h, w) for _, h, w, _ in b}
        assert len(sizes) == 1
        (h, _), = sizes
        assert len(b) == sampler.batches[h]
    assert [b[0] for b in batches] == [b[0] for b in MultiScaleSampler(
        1000, sizes=(16, 24, 32), base_size=32, base_batch=20, seed=3)]
    sampler.set_epoch(1)
    assert [b[0] for b in sampler] != [b[0] for b in batches]


def test_single_scale_sampler():
    sampler = SingleScaleSampler(10, 32, 4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 and sorted(i for b in batches for i, *_ in b) == list(range(10))
    assert len(list(SingleScaleSampler(10, 32, 4, drop_last=True))) == 2
    sampler.set_epoch(-1)
    assert all(epoch == -1 for b in sampler for *_, epoch in b)


def test_random_resized_crop_boxes_are_inside_and_within_ratio():
    rng = random.Random(0)
    for _ in range(500):
        left, top, right, bottom = random_resized_crop_box(300, 200, rng)
        assert 0 <= left < right <= 300 and 0 <= top < bottom <= 200
        area = (right - left) * (bottom - top)
        assert area >= 0.07 * 300 * 200 or (right - left, bottom - top) in ((266, 200), (300, 200))


def _write_folder(root, classes=("cat", "dog"), per_class=3, fmt="JPEG"):
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            color = (40 * c, 10 * i, 200)
            Image.new("RGB", (48 + 8 * i, 40), color).save(folder / f"{i}.{fmt.lower()}", fmt)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_folder_source_reads_the_imagenet_layout(tmp_path, fmt):
    _write_folder(tmp_path, fmt=fmt)
    src = FolderSource(tmp_path)
    assert src.classes == ["cat", "dog"] and len(src) == 6
    ds = ImageDataset(src, seed=0)
    image, label = ds[(4, 32, 32, 0)]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and label == 1
    evaluated, _ = ds[(0, 24, 24, -1)]
    assert evaluated.shape == (3, 24, 24)
    assert abs(int(evaluated[2].float().mean()) - 200) <= 3  # the blue channel survives JPEG
    assert torch.equal(ds[(4, 32, 32, 5)][0], ds[(4, 32, 32, 5)][0])  # seeded per sample
    subset = FolderSource(tmp_path, classes=1, per_class=2)
    assert subset.classes == ["cat"] and len(subset) == 2


def test_folder_source_errors_before_training(tmp_path):
    with pytest.raises(DataError, match=r"dataset path .*nope: no such folder$"):
        FolderSource(tmp_path / "nope")
    with pytest.raises(DataError, match=r"no class folders in it"):
        FolderSource(tmp_path)
    _write_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty: no images"):
        FolderSource(tmp_path)
    (tmp_path / "empty").rmdir()
    with pytest.raises(DataError, match=r"class 'cow' is not there"):
        FolderSource(tmp_path, classes=["cow"])


def test_unreadable_images_are_skipped_and_counted(tmp_path):
    _write_folder(tmp_path)
    (tmp_path / "cat" / "0.jpeg").write_bytes(b"not an image")
    ds = ImageDataset(FolderSource(tmp_path), seed=0)
    with pytest.warns(UserWarning, match="skipping unreadable image .*0.jpeg"):
        image, label = ds[(0, 16, 16, 0)]
    assert image.shape == (3, 16, 16) and ds.unreadable.value == 1


def _cifar_archive(root, name="cifar10", n=20):
    rng = np.random.default_rng(0)
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True)
    key = b"labels" if name == "cifar10" else b"fine_labels"
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if name == "cifar10" \
        else ["train", "test"]
    for f in files:
        batch = {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
                 key: [i % 3 for i in range(n)]}
        (folder / f).write_bytes(pickle.dumps(batch))
    meta = ("batches.meta", b"label_names") if name == "cifar10" else ("meta", b"fine_label_names")
    (folder / meta[0]).write_bytes(pickle.dumps({meta[1]: [b"a", b"b", b"c"]}))
    return folder


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickle_archives(tmp_path, name):
    folder = _cifar_archive(tmp_path, name)
    train = CifarSource(tmp_path, name, "train")
    assert len(train) == (100 if name == "cifar10" else 20) and train.classes == ["a", "b", "c"]
    test = CifarSource(folder, name, "test", classes=["b"], per_class=3)
    assert len(test) == 3 and test.classes == ["b"]
    image, label = test.item(0)
    assert image.size == (32, 32) and label == 0
    with pytest.raises(DataError, match="split 'val': expected train or test"):
        CifarSource(tmp_path, name, "val")


def test_cifar_download_checks_the_md5(tmp_path, monkeypatch):
    _cifar_archive(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    from nas.data import datasets

    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(datasets.CIFAR["cifar10"], "md5", md5)
    folder = download_cifar("cifar10", tmp_path / "dl", url=archive.as_uri())
    assert len(CifarSource(folder, "cifar10", "test")) == 20
    monkeypatch.setitem(datasets.CIFAR["cifar10"], "md5", "0" * 32)
    with pytest.raises(DataError, match=f"the download's MD5 is {md5}, expected 0{{32}}"):
        download_cifar("cifar10", tmp_path / "dl2", url=archive.as_uri())
    assert not (tmp_path / "dl2" / "cifar-10-python.tar.gz").exists()


def test_procedural_source_renders_on_first_use():
    # a study's checks need its classes and size, not 2,000 rendered images
    src = ProceduralSource(40, 32, "train")
    assert len(src) == 40 and len(src.classes) == 10
    assert "_rendered" not in vars(src)
    ImageDataset(src, seed=1)  # renders it in this process, before loader workers fork
    assert "_rendered" in vars(src)
    assert src.images.shape == (40, 3, 32, 32) and len(src.labels) == 40


def test_procedural_source_and_loader_in_worker_processes():
    src = ProceduralSource(40, 32, "train")
    ds = ImageDataset(src, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=SingleScaleSampler(40, 24, 16),
                                         num_workers=2, collate_fn=collate)
    in_workers = [x for x, _ in loader]
    in_process = [collate([ds[k] for k in b]) for b in SingleScaleSampler(40, 24, 16)]
    assert all(torch.equal(a, b[0]) for a, b in zip(in_workers, in_process, strict=True))
    assert in_workers[0].shape == (16, 3, 24, 24)
