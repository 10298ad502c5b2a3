"""Public names of a package imported on first use (PEP 562), so importing it stays cheap."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose names live in its submodules.

    Args:
        package: the package's ``__name__``.
        exports: public name -> the submodule (relative to ``package``) that defines it.

    A name is imported from its submodule on first access and then kept in the package's
    namespace, so ``from package import name`` and ``package.name`` cost nothing after the first;
    ``package.submodule`` imports that submodule.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:  # a submodule not imported yet (``package.grid``), as the eager package had
            if name.startswith("_") or importlib.util.find_spec(f"{package}.{name}") is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            return importlib.import_module(f".{name}", package)
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
