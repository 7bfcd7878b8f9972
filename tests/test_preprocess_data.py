"""Drawing preprocessing (MNIST's recipe) and the shipped test digits."""

import numpy as np
import pytest

from trav_gui.engine.data import MnistUnavailableError, load_mnist, test_digits as shipped_digits
from trav_gui.engine.preprocess import EmptyDrawingError, drawing_to_mnist


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
        drawing_to_mnist(np.zeros((3, 28, 28)))


def test_shipped_test_digits_are_mnist():
    images, labels = shipped_digits()
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert labels[15] == 5  # the product's favourite example
    assert not images.flags.writeable


def test_missing_mnist_says_how_to_fix(tmp_path):
    with pytest.raises(MnistUnavailableError, match=r"--download.*TRAV_GUI_DATA"):
        load_mnist(train=True, root=tmp_path)
