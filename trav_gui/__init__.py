"""Watch neural networks traverse an image from one class to another."""

__version__ = "0.1.0"
