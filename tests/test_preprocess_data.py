"""Drawing preprocessing (MNIST's recipe) and the shipped test digits."""

import numpy as np
import pytest

from trav_gui.engine.data import datasets as data
from trav_gui.engine.data.datasets import MnistUnavailableError, load_mnist
from trav_gui.engine.data.datasets import test_digits as shipped_digits
from trav_gui.engine.data.preprocess import EmptyDrawingError, drawing_to_mnist


def _centre_of_mass(img):
    ys, xs = np.indices(img.shape)
    return (ys * img).sum() / img.sum(), (xs * img).sum() / img.sum()


def test_off_centre_square_is_scaled_to_20_and_centred():
    canvas = np.zeros((280, 280), np.float32)
    canvas[10:60, 200:250] = 1.0  # a 50x50 square in the top-right corner
    out = drawing_to_mnist(canvas)
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1
    rows = np.flatnonzero((out > 0.5).any(axis=1))
    cols = np.flatnonzero((out > 0.5).any(axis=0))
    assert len(rows) == 20 and len(cols) == 20
    cy, cx = _centre_of_mass(out)
    assert abs(cy - 13.5) <= 0.5 and abs(cx - 13.5) <= 0.5


def test_aspect_ratio_is_kept_and_uint8_accepted():
    canvas = np.zeros((100, 300), np.uint8)
    canvas[40:90, 20:45] = 255  # 50 tall, 25 wide
    out = drawing_to_mnist(canvas)
    rows = np.flatnonzero((out > 0.5).any(axis=1))
    cols = np.flatnonzero((out > 0.5).any(axis=0))
    assert len(rows) == 20 and len(cols) == 10


def test_thin_strokes_are_anti_aliased():
    canvas = np.zeros((400, 400), np.float32)
    for i in range(300):  # a binary diagonal stroke, 3 pixels wide
        canvas[50 + i, 50 + i: 53 + i] = 1.0
    out = drawing_to_mnist(canvas)
    grey = (out > 0.05) & (out < 0.95)
    assert grey.sum() >= 10  # edges are grey, as in MNIST, not jagged 0/1


@pytest.mark.parametrize("canvas", [np.zeros((50, 50)), np.full((50, 50), 0.01)])
def test_empty_drawing_has_a_clear_error(canvas):
    with pytest.raises(EmptyDrawingError, match="empty"):
        drawing_to_mnist(canvas)


def test_non_2d_is_refused():
    with pytest.raises(ValueError, match="2-D"):
        drawing_to_mnist(np.zeros((4, 28, 28)))
    with pytest.raises(ValueError, match="2-D"):
        drawing_to_mnist(np.zeros((2, 3, 28, 28)))


def test_a_colour_drawing_is_placed_as_its_ink_would_be_and_keeps_its_colour():
    from trav_gui.engine.data.preprocess import drawing_to_image, paint

    ink = np.zeros((280, 280), np.float32)
    ink[40:200, 60:90] = 1.0
    ink[150:170, 60:220] = 0.7
    grey = drawing_to_mnist(ink)
    colour = (0.2, 1.0, 0.5)
    placed = drawing_to_mnist(paint(ink, colour))
    assert placed.shape == (3, 28, 28)
    np.testing.assert_allclose(placed, paint(grey, colour), atol=1e-6)  # the same box and centre, each channel
    # Other sizes keep MNIST's proportions: a 20/28 box, centred.
    big = drawing_to_mnist(ink, 56)
    rows = np.flatnonzero(big.max(1) > 0.05)
    assert big.shape == (56, 56) and 36 <= rows[-1] - rows[0] + 1 <= 42
    # A grey drawing in a colour world has three equal channels.
    image = drawing_to_image(ink, (3, 28, 28))
    assert image.shape == (3, 28, 28) and np.array_equal(image[0], grey) and np.array_equal(image[2], grey)


def test_shipped_test_digits_are_mnist():
    images, labels = shipped_digits()
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert labels[15] == 5  # the product's favourite example
    assert not images.flags.writeable


def test_missing_mnist_says_how_to_fix(tmp_path):
    with pytest.raises(MnistUnavailableError, match=r"--download.*TRAV_GUI_DATA"):
        load_mnist(train=True, root=tmp_path)


# ----------------------------------------------------------------------------- damaged data


def _data_root(tmp_path, how):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.MNIST_FILES[True]:
        if how == "garbage":
            (raw / name).write_bytes(np.random.default_rng(0).bytes(5000))
        elif how == "empty":
            (raw / name).write_bytes(b"")
        elif how == "truncated":
            (raw / name).write_bytes(b"\x00\x00\x08\x03\x00\x00\xea\x60" + b"\x00" * 100)
    return tmp_path


@pytest.mark.parametrize("how", ["garbage", "empty", "truncated"])
def test_damaged_mnist_says_what_is_wrong_and_how_to_fix_it(tmp_path, how):
    root = _data_root(tmp_path, how)
    with pytest.raises(data.MnistUnavailableError) as info:
        data.load_mnist(True, root)
    message = str(info.value)
    assert "damaged" in message and str(root / "MNIST" / "raw") in message
    assert "Delete that folder" in message and "--download" in message and "--data-root" in message


def test_missing_mnist_names_the_missing_files(tmp_path):
    with pytest.raises(data.MnistUnavailableError, match="MNIST not found: .*train-images-idx3-ubyte.*--download"):
        data.load_mnist(True, tmp_path)


@pytest.mark.parametrize("content", ["missing", "garbage", "zip of other arrays"])
def test_damaged_shipped_digits_are_a_clear_error(tmp_path, monkeypatch, content):
    res = tmp_path / "res"
    res.mkdir()
    if content == "garbage":
        (res / "mnist_test.npz").write_bytes(b"PK\x03\x04 not really a zip")
    elif content == "zip of other arrays":
        np.savez(res / "mnist_test.npz", images=np.zeros((3, 10, 10), np.uint8), labels=np.zeros(3, np.uint8))
    monkeypatch.setenv("TRAV_GUI_RESOURCES", str(res))
    data.test_set.cache_clear()
    try:
        with pytest.raises(data.DigitsUnavailableError, match="mnist_test.npz"):
            data.test_digits()
    finally:
        monkeypatch.undo()
        data.test_set.cache_clear()
    assert data.test_digits()[0].shape == (10000, 28, 28)
