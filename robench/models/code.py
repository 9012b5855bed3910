"""Architectures of one's own, named by import path: ``package.module:Callable`` or ``path/file.py:Callable``.

A card's ``arch`` (or ``--model``) in one of these forms names an ``nn.Module`` class or a factory, called
with the card's ``arch_kwargs``; robench then loads the card's weights into what it returns, exactly as for
a timm architecture. Folders named by ``--code-dir`` (the CLI's global option) and ``$ROBENCH_CODE`` (an
``os.pathsep`` list) are searched for the package first, so a research repository need not be installed.

The code decides verdicts as much as the weights do, so its identity enters the run's (:func:`provenance`):
the callable's name, the sha256 of the file that defines it when that file is the user's (not part of an
installed distribution), and the distribution's name and version when it is installed. A board accepts only
code anyone can re-run (:func:`robench.submission.submit` checks the card's ``code`` pin).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from robench.core.errors import UsageError
from robench.core.registry import did_you_mean

_MODULE = r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*"
_REF = re.compile(rf"^(?P<module>{_MODULE}|.+\.py):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")
_cli_dirs: list[Path] = []
_WHERE = "--code-dir DIR or $ROBENCH_CODE"


def is_code_ref(text: str) -> bool:
    """``package.module:Callable`` or ``path/file.py:Callable`` (a library spec like ``timm:x`` is not one:
    :mod:`robench.models.specs` asks first)."""
    return bool(_REF.match(text))


def set_code_dirs(dirs: list[str | os.PathLike] | None) -> None:
    """The ``--code-dir`` folders of this process, searched before ``$ROBENCH_CODE`` and ``sys.path``."""
    _cli_dirs[:] = [Path(d).expanduser().resolve() for d in dirs or []]


def code_dirs() -> list[Path]:
    env = [Path(p).expanduser().resolve() for p in os.environ.get("ROBENCH_CODE", "").split(os.pathsep) if p]
    for folder in _cli_dirs + env:
        if not folder.is_dir():
            source = "--code-dir" if folder in _cli_dirs else "ROBENCH_CODE"
            raise UsageError(f"code folder {folder} ({source}) does not exist")
    return _cli_dirs + env


@contextlib.contextmanager
def _search_path() -> Iterator[None]:
    extra = [str(d) for d in code_dirs()]
    sys.path[:0] = extra
    try:
        yield
    finally:
        del sys.path[: len(extra)]


def sha256_bytes_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _import_file(path: Path):
    """The module defined by ``path``, under a name derived from its content, so two files of one name
    (or one file before and after an edit) never share a module object."""
    if not path.is_file():
        raise UsageError(f"code file {path} does not exist")
    name = f"robench_user_code_{sha256_bytes_of(path)[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _search_path():
            spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise UsageError(f"importing {path} failed: {type(e).__name__}: {e}") from None
    return module


def _import_module(name: str):
    try:
        with _search_path():
            return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise UsageError(
            f"cannot import {name!r} ({e}): install it, or name its folder with {_WHERE}"
        ) from None
    except Exception as e:
        raise UsageError(f"importing {name!r} failed: {type(e).__name__}: {e}") from None


def _split(ref: str) -> tuple[str, str]:
    match = _REF.match(ref)
    if not match:
        raise UsageError(
            f"{ref!r} is not an import path: write package.module:Callable or path/file.py:Callable"
        )
    return match.group("module"), match.group("attr")


def _file(where: str, base: Path | None) -> Path:
    path = Path(where).expanduser()
    return (base / path if base is not None and not path.is_absolute() else path).resolve()


def provenance(ref: str, base: Path | None = None) -> dict:
    """What identifies the code ``ref`` names, found without running it: the callable, the sha256 of the
    file that defines it when that is the user's, the installed distribution's name and version otherwise.
    This is the ``code`` entry of the model's identity (:meth:`robench.models.ModelCard.meta`)."""
    where, attr = _split(ref)
    if where.endswith(".py"):
        path = _file(where, base)
        if not path.is_file():
            raise UsageError(f"code file {path} does not exist")
        return {"callable": f"{path.name}:{attr}", "file_sha256": sha256_bytes_of(path)}
    try:
        with _search_path():
            spec = importlib.util.find_spec(where)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise UsageError(f"cannot find module {where!r}: install it, or name its folder with {_WHERE}")
    top = where.split(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return {"callable": ref, "package": dist, "version": importlib.metadata.version(dist)}
    return {"callable": ref, "file_sha256": sha256_bytes_of(Path(spec.origin))}


def resolve(ref: str, base: Path | None = None) -> tuple[Callable, dict]:
    """(the callable ``ref`` names, its :func:`provenance`). A relative file path resolves from ``base`` (the
    card's folder), else from the working directory."""
    where, attr = _split(ref)
    found = provenance(ref, base)
    module = _import_file(_file(where, base)) if where.endswith(".py") else _import_module(where)
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            known = [n for n in dir(target) if not n.startswith("_")]
            raise UsageError(f"{where} has no {attr!r}{did_you_mean(part, known, listing=None)}")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"{ref} is a {type(target).__name__}, not a class or function that builds a network")
    return target, found


def build(ref: str, kwargs: dict, base: Path | None = None):
    """The network ``ref`` builds with ``kwargs``; one line when the call fails or returns no nn.Module."""
    from torch import nn

    factory, _ = resolve(ref, base)
    try:
        net = factory(**kwargs)
    except Exception as e:
        raise UsageError(
            f"{ref}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: {type(e).__name__}: {e}"
        ) from None
    if not isinstance(net, nn.Module):
        raise UsageError(f"{ref} returned a {type(net).__name__}, not a torch.nn.Module")
    return net
