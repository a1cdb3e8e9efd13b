"""timm's MobileViT models for side-by-side benchmarks, without torchvision.

timm imports torchvision at start-up (for a few transforms and ops that the MobileViT models never
touch), and torchvision has no CPU wheel for this project's torch. :func:`load_timm` installs an
empty stand-in for ``torchvision`` in this process only, then imports timm. Never used by the
package or the tests; install timm with ``make bench-env`` (``pip install --no-deps timm``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any


class _PlaceholderMeta(type):
    # timm reads attributes of torchvision names at import time (InterpolationMode.NEAREST as a
    # dict key): each is one more placeholder, the same object each time.
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        placeholder = _PlaceholderMeta(f"{cls.__name__}.{name}", (_Placeholder,), {})
        setattr(cls, name, placeholder)
        return placeholder


class _Placeholder(metaclass=_PlaceholderMeta):
    """Any name timm reads from torchvision: a class it can subclass or name in annotations,
    that fails if anything calls it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("torchvision is not installed; this benchmark's stand-in has no code")


class _EmptyModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        placeholder = _PlaceholderMeta(name, (_Placeholder,), {})
        setattr(self, name, placeholder)
        return placeholder


class _StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _EmptyModule(spec.name)
        module.__path__ = []  # a package, so any submodule import succeeds
        module.__version__ = "0.0"
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def load_timm() -> Any:
    """Import timm with the stand-in torchvision; raises ImportError when timm is missing."""
    # Always the stand-in: the project never depends on torchvision, even where one is installed.
    sys.meta_path.insert(0, _StandIn())
    import timm

    return timm
