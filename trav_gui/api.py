"""The Python API: traverse your own model, or open the app on it, from a script or a notebook.

>>> import trav_gui
>>> result = trav_gui.traverse(model, image, target=3)      # any nn.Module: (N,C,H,W) -> logits
>>> result.frames.shape, result.probs[-1, 3]
((201, 28, 28), 0.99...)
>>> trav_gui.show(models={"mine": model}, image=image, target=3)   # the app, on in-memory models

Both use the app's own engine (:func:`trav_gui.engine.core.traversal.traverse` and
:class:`~trav_gui.engine.core.traversal.TraversalConfig`): a run here is the run the app and the
command line make with the same settings. torch is imported when a function is first called,
not by ``import trav_gui``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

__all__ = ["TraversalResult", "show", "traverse"]

MAX_NAME_CHARS = 64


@dataclass(frozen=True, eq=False)
class TraversalResult:
    """One traversal of one image by one model; arrays have one row per step taken (T = steps + 1,
    fewer with ``stop_at_prob``).

    Attributes
    ----------
    frames : (T, H, W) (colour worlds: (T, 3, H, W)) float32 in [0, 1], the image after each
        step (row 0: the start).
    probs : (T, K) float32, the model's class probabilities for each frame.
    l2, linf : (T,) float32, ‖x − x₀‖₂ and ‖x − x₀‖∞.
    objective : (T,) float32, the objective climbed (the target's log-probability by default).
    steps : (T,) int, the step number of each row.
    target : the target class; config : the :class:`~trav_gui.engine.core.traversal.TraversalConfig` used.
    dataset : the data set the image and model belong to.
    judge_probs, nn_ratio : realism of each frame, when the data set has a judge (the realism
        hook, :func:`_realism`): the judge's class probabilities (T, K) and the distance to the
        nearest real image of the target class relative to what is typical (T,). None otherwise;
        never made up.
    colour_kept, grey_share : in colour worlds with realism, per frame whether the ink added
        since the start keeps the start's hue (T,) bool, and the share of it that is grey (T,).
    """

    frames: np.ndarray
    probs: np.ndarray
    l2: np.ndarray
    linf: np.ndarray
    objective: np.ndarray
    steps: np.ndarray
    target: int
    config: Any
    dataset: str
    judge_probs: np.ndarray | None = None
    nn_ratio: np.ndarray | None = None
    colour_kept: np.ndarray | None = None
    grey_share: np.ndarray | None = None

    @property
    def predictions(self) -> np.ndarray:
        """(T,) the predicted class of each frame."""
        return self.probs.argmax(-1)

    @property
    def flip_step(self) -> int | None:
        """The first step at which the model predicts the target; None if it never does."""
        hits = (self.predictions == self.target).nonzero()[0]
        return int(self.steps[hits[0]]) if hits.size else None


def _as_image(image, ds) -> "np.ndarray":
    """One image of data set ``ds`` as float32 in [0, 1]: grey (H, W) from (H, W), (1, H, W) or
    (1, 1, H, W); colour (3, H, W) from (3, H, W) or (1, 3, H, W); numpy or torch. uint8 images
    are read as 0..255."""
    import numpy as np
    import torch

    a = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    c, h, w = ds.shape
    accepted = [(h, w), (1, h, w), (1, 1, h, w)] if c == 1 else [(c, h, w), (1, c, h, w)]
    if a.shape not in accepted:
        raise ValueError(f"image must be {' or '.join(map(str, accepted[:2]))} for {ds.title}; got shape {a.shape}")
    a = a.reshape((h, w) if c == 1 else (c, h, w))
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)


def _as_target(target, num_classes: int = 10) -> int:
    """A class 0..K-1 from an int or a numpy integer (a label straight from a data set)."""
    import numbers

    if (isinstance(target, bool) or not isinstance(target, numbers.Integral)
            or not 0 <= int(target) < num_classes):
        raise ValueError(f"target must be an int in 0..{num_classes - 1}, got {target!r}")
    return int(target)


def _as_model(model, device=None) -> "nn.Module":
    """An nn.Module as it is; a name or path loaded as the app loads model files."""
    import os

    from torch import nn

    if isinstance(model, nn.Module):
        return model
    if isinstance(model, (str, os.PathLike)):
        from trav_gui.engine.models.loading import load_model

        return load_model(model, device=device or "cpu")
    raise TypeError(f"a model must be a torch.nn.Module (or a model's name or path), got {type(model).__name__}")


def _check_outputs(model: "nn.Module", image: "np.ndarray", name: str, ds) -> None:
    """A clear error now rather than a shape error deep in a run: (1, C, H, W) must give (1, K)."""
    import torch

    device = next(iter(model.parameters()), torch.empty(0)).device
    k = ds.num_classes
    want = f"{name} must map (N, {', '.join(map(str, ds.shape))}) images in [0, 1] to (N, {k}) logits for {ds.title}"
    try:
        with torch.no_grad():
            out = model(torch.as_tensor(image, device=device).reshape(1, *ds.shape))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:  # a shape mismatch inside the model
        raise ValueError(f"{want}; on one image it failed: {str(exc).splitlines()[0]}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, k):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{want}; for one image it returned {shape}")


def _realism(frames: "np.ndarray", target: int, dataset: str, device) -> tuple | None:
    """The realism hook: (judge_probs, nn_ratio, colour_kept, grey_share) of ``frames`` from the
    data set's judge (the colour measures None in grey worlds), or None.

    Uses :class:`trav_gui.engine.realism.RealismScorer` (the shipped judge of the data set and
    its reference images) when that module and the data set's judge are there; without them
    the result has no realism fields. Nothing is estimated in their place.
    """
    try:
        from trav_gui.engine.realism import RealismScorer
    except ImportError:
        return None
    from trav_gui.engine.models.errors import ModelLoadError

    try:
        realism = RealismScorer(dataset=dataset, device=device).score(frames, target, start=frames[0])
    except (ModelLoadError, ValueError, KeyError, OSError):
        return None
    return realism.judge_probs, realism.nn_ratio, realism.colour_kept, realism.grey_share


def traverse(model, image, target: int, steps: int = 200, step_size: float = 0.1, *, norm: str = "l2",
             eps: float | None = None, objective: str = "logprob", random_start: bool = False,
             stop_at_prob: float | None = None, seed: int = 0, dataset: str = "mnist",
             realism: bool = True) -> TraversalResult:
    """Take gradient steps on ``image``'s pixels so that ``model`` moves toward class ``target``.

    Parameters
    ----------
    model : any ``torch.nn.Module`` mapping (N, C, H, W) float32 in [0, 1] to logits (N, K)
        (log-probabilities work too), on any device; or a model's name or file path. It is put
        in eval mode for the run and back in its former mode after. (C, H, W) and K are the
        data set's: (1, 28, 28) and 10 for MNIST.
    image : grey (H, W) or (1, H, W); colour (3, H, W); numpy or torch, values in [0, 1]
        (uint8: 0..255).
    target : the class to move toward, 0..K-1.
    steps, step_size, norm, eps, objective, random_start, stop_at_prob, seed : the settings of
        :class:`~trav_gui.engine.core.traversal.TraversalConfig` (the app's settings panel), with its defaults.
    dataset : the image world (``"mnist"``, ``"fashion-mnist"``, ``"colored-mnist"`` or a user's
        image folder): its image shape and classes, and whose judge scores realism.
    realism : False to skip the realism fields.

    Returns
    -------
    TraversalResult with numpy ``frames`` (T, H, W) or (T, 3, H, W), ``probs`` (T, K), ``l2``, ``linf``...

    Raises
    ------
    ValueError : a bad image, target or setting (naming it), or a model that does not return (N, K).
    trav_gui.engine.core.traversal.NonFiniteOutputError : the model returned NaN or inf; the frames
        before that step are in the exception's ``result``.
    """
    import torch

    from trav_gui.engine.core.traversal import NonFiniteOutputError, TraversalConfig, stack_frames
    from trav_gui.engine.core.traversal import traverse as engine_traverse
    from trav_gui.engine.data.datasets import get_dataset

    config = TraversalConfig(steps=steps, step_size=step_size, norm=norm, eps=eps, objective=objective,
                             random_start=random_start, stop_at_prob=stop_at_prob, seed=seed)
    ds = get_dataset(dataset)
    dataset = ds.name
    target = _as_target(target, ds.num_classes)
    model = _as_model(model)
    x0 = _as_image(image, ds)
    was_training = model.training
    model.eval()
    frames = []
    try:
        _check_outputs(model, x0, "model", ds)
        for frame in engine_traverse([model], x0, target, config, shape=ds.shape):
            frames.append(frame)
    except NonFiniteOutputError as exc:
        exc.result = _result(stack_frames(frames), target, config, dataset, None) if frames else None
        raise
    finally:
        model.train(was_training)
    arrays = stack_frames(frames)
    device = next(iter(model.parameters()), torch.empty(0)).device
    judged = _realism(arrays["images"][:, 0, 0], target, dataset, device) if realism else None
    return _result(arrays, target, config, dataset, judged)


def _result(arrays: dict, target: int, config, dataset: str, judged: tuple | None) -> TraversalResult:
    """The one model's, one image's rows of :func:`~trav_gui.engine.core.traversal.stack_frames`'s arrays."""
    one = {k: arrays[k][:, 0, 0] for k in ("images", "probs", "l2", "linf", "objective")}
    judge_probs, nn_ratio, kept, grey = judged or (None, None, None, None)
    return TraversalResult(frames=one["images"], probs=one["probs"], l2=one["l2"], linf=one["linf"],
                           objective=one["objective"], steps=arrays["step"], target=target, config=config,
                           dataset=dataset, judge_probs=judge_probs, nn_ratio=nn_ratio, colour_kept=kept,
                           grey_share=grey)


def _named_models(models) -> dict[str, "nn.Module"]:
    from torch import nn

    if models is None:
        return {}
    if isinstance(models, (nn.Module, str)):
        models = [models]
    if not isinstance(models, Mapping):
        models = {f"model-{i + 1}": m for i, m in enumerate(models)}
    named = {}
    for name, model in models.items():
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
            raise ValueError(f"model names must be non-empty strings of at most {MAX_NAME_CHARS} characters, "
                             f"got {name!r}")
        named[name.strip()] = _as_model(model)
    return named


def show(models=None, image=None, target: int | None = None, *, dataset: str = "mnist",
         block: bool | None = None):
    """Open the app with your in-memory models listed and ticked, beside the shipped ones.

    Parameters
    ----------
    models : ``{"name": model, ...}`` (or a list, or one model) of ``torch.nn.Module`` mapping
        (N, C, H, W) in [0, 1] to (N, K) logits, all on one device (names or paths of model
        files work too). Each is put in eval mode. Up to four are ticked.
    image : the start image ((H, W) or (3, H, W), numpy or torch, in [0, 1]); default: the app's
        first test image.
    target : the target class; default: the app's.
    dataset : the image world (``"mnist"``, ``"fashion-mnist"``, ``"colored-mnist"``, a user's
        folder): the test images and models offered.
    block : run Qt's event loop until the window closes. Default: block, unless a Qt event loop
        is already running (a notebook after ``%gui qt``), where the window just opens.

    Returns
    -------
    The :class:`~trav_gui.qt.window.MainWindow` (after it was closed, when blocking).

    Raises
    ------
    RuntimeError : no display (the one-line reason of ``trav-gui gui``).
    ValueError : a bad image, target or model.
    """
    from trav_gui.engine.data.datasets import get_dataset

    named = _named_models(models)
    ds = get_dataset(dataset)
    dataset = ds.name
    x0 = _as_image(image, ds) if image is not None else None
    target = _as_target(target, ds.num_classes) if target is not None else None
    for name, model in named.items():
        model.eval()
        _check_outputs(model, x0 if x0 is not None else _blank(ds), repr(name), ds)
    from trav_gui.qt.show import show_models

    return show_models(named, x0, target, dataset=dataset, block=block)


def _blank(ds) -> "np.ndarray":
    import numpy as np

    return np.zeros(ds.shape, np.float32)
