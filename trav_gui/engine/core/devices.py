"""The torch devices this machine offers, and how the app names them (Qt-free)."""

from __future__ import annotations

import torch

__all__ = ["available_devices", "default_device", "device_label"]


def available_devices() -> list[str]:
    """``"cpu"``, then every CUDA device (``"cuda:0"``, ...), then ``"mps"`` where there is one."""
    devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def default_device() -> str:
    """The first CUDA device where there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_label(device: str) -> str:
    """What the app calls ``device``: ``CPU``, ``CUDA (NVIDIA H200)``, ``MPS (Apple GPU)``."""
    if device.startswith("cuda"):
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    return "MPS (Apple GPU)" if device == "mps" else "CPU"
