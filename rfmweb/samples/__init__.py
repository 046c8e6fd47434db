"""Built-in sample volumes, generated on demand (deterministic from a seed, nothing downloaded,
nothing cached on disk).

>>> from rfmweb import samples
>>> samples.list_samples()
['brain_glioma', 'ct_phantom']
>>> vol = samples.load("ct_phantom", size=48)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from ..errors import InputError
from ..volume import Volume
from .ct_phantom import ct_phantom
from .glioma import glioma_case

__all__ = ["SAMPLES", "ct_phantom", "glioma_case", "list_samples", "load"]

#: Sample name -> one-line description.
SAMPLES = {
    "brain_glioma": "brain MRI (T1n, T1c, T2w, FLAIR) with a synthetic glioma and BraTS labels, on the MNI152 template",
    "ct_phantom": "procedural torso CT (chest and upper abdomen) with 24 labelled structures",
}

_GENERATORS: dict[str, Callable[..., Volume]] = {"brain_glioma": glioma_case, "ct_phantom": ct_phantom}


def list_samples() -> list[str]:
    """Names accepted by :func:`load`, sorted."""
    return sorted(SAMPLES)


def load(name: str, **kwargs) -> Volume:
    """Generate a sample volume.

    Args:
        name: one of :func:`list_samples`.
        **kwargs: passed to the generator (:func:`ct_phantom`: ``size``, ``seed``;
            :func:`glioma_case`: ``seed``, ``resolution_mm``, ``postop``).

    Raises:
        InputError: unknown name, or an argument the generator does not take.
    """
    if name not in _GENERATORS:
        raise InputError(f"no sample named {name!r}; samples are {', '.join(list_samples())}")
    generator = _GENERATORS[name]
    try:
        inspect.signature(generator).bind(**kwargs)
    except TypeError as e:
        raise InputError(f"sample {name!r}: {e}") from None
    return generator(**kwargs)


__all__ = ["SAMPLES", "ct_phantom", "glioma_case", "list_samples", "load"]
