"""The model registry: one folder per camera view, one subfolder per version of its model.

    <registry>/<view>/<version>/model.onnx
    <registry>/<view>/<version>/card.json

A model learns one view's normal activity, so each camera names its view (``cameras.<id>.view``) and
is scored with that view's newest version. Versions are ordered by their folder names, with runs of
digits compared as numbers (``2`` < ``10``; ``v9`` < ``v10``). A version is
published by writing it under a hidden name and renaming it into place (``publish``), so a reader
never sees a half-written one: folders whose name starts with a dot, or that lack either file, are
not versions."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from models.card import card_path

MODEL_FILE = "model.onnx"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Version:
    view: str
    version: str
    model_path: Path

    @property
    def label(self) -> str:
        """What events carry as their model version: ``<view>/<version>``."""
        return f"{self.view}/{self.version}"


def version_key(name: str) -> tuple:
    """Sort key of a version name: digit runs as numbers, the rest as text."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.findall(r"\d+|\D+", name))


def check_name(kind: str, name: str) -> str:
    if not _NAME.match(name) or len(name) > 64:
        raise ValueError(f"{kind} {name!r}: letters, digits and _.- only, starting with a letter or digit, at most 64")
    return name


def versions(root: Path, view: str) -> list[Version]:
    """The view's complete versions, oldest first."""
    folder = root / check_name("view", view)
    if not folder.is_dir():
        return []
    found = []
    for d in folder.iterdir():
        if d.name.startswith(".") or not _NAME.match(d.name):
            continue
        model = d / MODEL_FILE
        if model.is_file() and card_path(model).is_file():
            found.append(Version(view, d.name, model))
    return sorted(found, key=lambda v: version_key(v.version))


def latest(root: Path, view: str) -> Version | None:
    """The view's newest complete version, or None."""
    found = versions(root, view)
    return found[-1] if found else None


def publish(model_dir: Path, root: Path, view: str, version: str) -> Version:
    """Copies a trained model (``model.onnx`` and ``card.json`` in ``model_dir``) into the registry as
    ``view``/``version``: written under a hidden name, then renamed into place. Refuses a version
    that exists (a published version never changes: events name it)."""
    check_name("view", view)
    check_name("version", version)
    src = model_dir / MODEL_FILE
    if not src.is_file() or not card_path(src).is_file():
        raise FileNotFoundError(f"{model_dir}: needs {MODEL_FILE} and {card_path(src).name}")
    dest = root / view / version
    if dest.exists():
        raise FileExistsError(f"{dest} exists: a published version never changes; publish another version")
    tmp = root / view / f".{version}.{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
        shutil.copy2(src, tmp / MODEL_FILE)
        shutil.copy2(card_path(src), card_path(tmp / MODEL_FILE))
        os.rename(tmp, dest)  # atomic on one file system; fails if dest appeared meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Version(view, version, dest / MODEL_FILE)
