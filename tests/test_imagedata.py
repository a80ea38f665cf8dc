import os

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pcmmeta.errors import UserInputError
from pcmmeta.io import imagedata
from pcmmeta.io.imagedata import (
    ImageSet,
    augment_rotations,
    cached_glyphs,
    glyphs,
    load_image_folder,
    nearest_neighbour_accuracy,
    split_classes,
    with_rotations,
)


def _write_drawing(path, seed):
    """A 105×105 Omniglot-like PNG: black strokes on white (1-bit like Omniglot for odd seeds)."""
    rng = np.random.default_rng(seed)
    image = Image.new("L", (105, 105), 255)
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        draw.line([tuple(p) for p in rng.integers(15, 90, (3, 2)).tolist()], fill=0, width=9)
    (image.convert("1") if seed % 2 else image).save(path)


def _tree(root, alphabets=("alpha", "beta"), characters=3, drawings=4):
    for i, a in enumerate(alphabets):
        for c in range(characters):
            folder = root / a / f"char{c:02d}"
            folder.mkdir(parents=True)
            for d in range(drawings):
                _write_drawing(folder / f"{d:02d}.png", seed=100 * i + 10 * c + d)
    return root


def test_load_omniglot_layout(tmp_path):
    root = _tree(tmp_path / "omni", drawings=5)
    (root / "alpha" / "char01" / "bad.png").write_bytes(b"\x00garbage, not a png")
    (root / "alpha" / "char01" / ".DS_Store").write_bytes(b"\x00\x01")
    s = load_image_folder(root, min_per_class=4)
    # 1 bad file in 31 (< 5 %): skipped and counted; every class keeps its first 5 readable files.
    assert s.images.shape == (6, 5, 28, 28) and s.images.dtype == np.float32
    assert s.skipped == 1 and s.n_classes == 6 and s.n_drawings == 5
    assert s.class_names == tuple(f"{a}/char{c:02d}" for a in ("alpha", "beta") for c in range(3))
    assert s.source == str(root)
    # Inverted: the white border is background ≈ 0, the black strokes ≈ 1.
    assert 0.0 <= s.images.min() and s.images.max() <= 1.0
    assert np.abs(s.images[..., 0, :]).max() < 0.05
    assert s.images.max(axis=(2, 3)).min() > 0.9
    assert 0.03 < s.images.mean() < 0.5
    # Same drawing file, same image.
    again = load_image_folder(root, min_per_class=4)
    np.testing.assert_array_equal(s.images, again.images)


def test_load_one_level_and_equalised(tmp_path):
    for name, n in (("a", 3), ("b", 5)):
        (tmp_path / name).mkdir()
        for d in range(n):
            _write_drawing(tmp_path / name / f"{d}.png", seed=d)
    s = load_image_folder(tmp_path, min_per_class=2)
    assert s.class_names == ("a", "b") and s.images.shape == (2, 3, 28, 28)
    # Class b keeps its first three files in sorted order.
    np.testing.assert_array_equal(s.images[1], s.images[0])


@pytest.mark.parametrize(
    "case",
    ["missing", "file", "empty", "too_few", "unreadable"],
)
def test_load_errors_name_the_path(tmp_path, case):
    root = tmp_path / "data"
    named = root
    min_per_class = 4
    if case == "file":
        root.write_text("not a folder")
    elif case == "empty":
        root.mkdir()
        (root / ".hidden").mkdir()
        (root / "loose.png").write_bytes(b"")
    elif case == "too_few":
        _tree(root)
        min_per_class = 20
        named = root / "alpha" / "char00"
    elif case == "unreadable":
        _tree(root)
        for i in range(3):  # 3 of 27 files: more than 5 %
            (root / "beta" / "char02" / f"z{i}.png").write_bytes(b"garbage")
        named = root / "beta" / "char02" / "z0.png"
    with pytest.raises(UserInputError) as info:
        load_image_folder(root, min_per_class=min_per_class)
    message = str(info.value)
    assert str(named) in message and "\n" not in message
    if case == "too_few":
        assert "4 readable images" in message and "20" in message


def test_rotations():
    rng = np.random.default_rng(0)
    images = rng.random((3, 2, 28, 28)).astype(np.float32)
    rotated = with_rotations(images)
    assert rotated.shape == (12, 2, 28, 28)
    for k in range(4):
        for c in range(3):
            np.testing.assert_array_equal(rotated[3 * k + c], np.rot90(images[c], k, axes=(-2, -1)))
    s = augment_rotations(ImageSet(images, ("a", "b", "c"), "test"))
    assert s.class_names[:4] == ("a", "b", "c", "a@90") and s.class_names[-1] == "c@270"
    np.testing.assert_array_equal(s.images, rotated)


def test_split_classes():
    s = glyphs(n_classes=20, drawings=2)
    train, test = split_classes(s, 0.75, seed=3)
    assert (train.n_classes, test.n_classes) == (15, 5)
    assert set(train.class_names).isdisjoint(test.class_names)
    assert set(train.class_names) | set(test.class_names) == set(s.class_names)
    index = {n: i for i, n in enumerate(s.class_names)}
    for part in (train, test):
        for name, images in zip(part.class_names, part.images):
            np.testing.assert_array_equal(images, s.images[index[name]])
    again, _ = split_classes(s, 0.75, seed=3)
    other, _ = split_classes(s, 0.75, seed=4)
    assert again.class_names == train.class_names and other.class_names != train.class_names
    with pytest.raises(UserInputError):
        split_classes(s, 1.0, seed=0)


def test_glyphs_deterministic_prefix_and_range():
    a = glyphs(n_classes=40, drawings=6, seed=1)
    b = glyphs(n_classes=40, drawings=6, seed=1)
    assert a.images.shape == (40, 6, 28, 28) and a.images.dtype == np.float32
    np.testing.assert_array_equal(a.images, b.images)
    assert "SYNTHETIC" in a.source
    assert a.images.min() == 0.0 and a.images.max() == 1.0
    np.testing.assert_array_equal(np.round(a.images * 255) / 255, a.images)  # k/255 levels
    np.testing.assert_array_equal(glyphs(n_classes=10, drawings=6, seed=1).images, a.images[:10])
    np.testing.assert_array_equal(glyphs(n_classes=40, drawings=3, seed=1).images, a.images[:, :3])
    assert not np.array_equal(glyphs(n_classes=40, drawings=6, seed=2).images, a.images)
    # Every drawing has ink; drawings of one class differ (jitter).
    assert a.images.sum(axis=(2, 3)).min() > 5
    assert not np.array_equal(a.images[:, 0], a.images[:, 1])


def test_glyphs_same_class_more_alike():
    s = glyphs(n_classes=40, drawings=6)
    x = s.images.reshape(40 * 6, -1)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    corr = x @ x.T / x.shape[1]
    label = np.repeat(np.arange(40), 6)
    same = (label[:, None] == label[None]) & ~np.eye(len(label), dtype=bool)
    different = label[:, None] != label[None]
    assert corr[same].mean() > corr[different].mean() + 0.2


def test_glyph_nearest_neighbour_baseline_in_range():
    s = glyphs(n_classes=200, drawings=20)
    mean, se = nearest_neighbour_accuracy(s, n_way=5, k_shot=1, n_tasks=200, seed=0)
    assert 0.35 < mean <= 0.85 and 0 < se < 0.02
    five, _ = nearest_neighbour_accuracy(s, n_way=5, k_shot=5, n_tasks=100, seed=0)
    assert five > mean


def test_nearest_neighbour_perfect_and_chance():
    rng = np.random.default_rng(0)
    prototypes = rng.random((10, 1, 28, 28)).astype(np.float32)
    clean = ImageSet(np.repeat(prototypes, 20, axis=1), tuple("abcdefghij"), "test")
    assert nearest_neighbour_accuracy(clean, 5, 1, 20, seed=0)[0] == 1.0
    noise = ImageSet(rng.random((10, 20, 28, 28)).astype(np.float32), tuple("abcdefghij"), "noise")
    mean, se = nearest_neighbour_accuracy(noise, 5, 1, 200, seed=0)
    assert abs(mean - 0.2) < 4 * se + 0.01
    with pytest.raises(UserInputError):
        nearest_neighbour_accuracy(clean, 5, 10, 1, seed=0, queries_per_class=15)


def test_cached_glyphs(tmp_path, monkeypatch):
    fresh = glyphs(n_classes=12, drawings=4, seed=5, jitter=0.8)
    first = cached_glyphs(12, 4, seed=5, jitter=0.8, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.images, fresh.images)
    (path,) = tmp_path.glob("*.npz")
    assert f"v{imagedata.GLYPH_VERSION}" in path.name and not list(tmp_path.glob("*.tmp"))

    def boom(*args):
        raise AssertionError("regenerated although cached")

    with monkeypatch.context() as m:
        m.setattr(imagedata, "_glyphs_uint8", boom)
        second = cached_glyphs(12, 4, seed=5, jitter=0.8, cache_dir=tmp_path)
    np.testing.assert_array_equal(second.images, fresh.images)
    assert second.class_names == fresh.class_names

    # Other parameters, other file.
    cached_glyphs(12, 4, seed=5, jitter=0.9, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2

    # A corrupt file is regenerated (and rewritten).
    path.write_bytes(b"not an npz")
    third = cached_glyphs(12, 4, seed=5, jitter=0.8, cache_dir=tmp_path)
    np.testing.assert_array_equal(third.images, fresh.images)
    with np.load(path) as data:
        assert data["images"].dtype == np.uint8


def test_cached_glyphs_default_dir_and_unwritable(tmp_path, monkeypatch):
    monkeypatch.setenv("PCMMETA_CACHE", str(tmp_path / "cache"))
    s = cached_glyphs(5, 2, seed=0)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    t = cached_glyphs(5, 2, seed=0, cache_dir=blocker / "sub")
    np.testing.assert_array_equal(s.images, t.images)
    assert not (blocker / "sub").exists() and os.path.isfile(blocker)
