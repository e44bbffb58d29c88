"""The public API: a sorted ``__all__`` that names exactly the public members (as httpx checks)."""

from __future__ import annotations

import importlib
import types

import pytest

import llava_hf

MODULES = [
    "llava_hf",
    "llava_hf.errors",
    "llava_hf.problems",
    "llava_hf.records",
    "llava_hf.validate",
    "llava_hf.media.files",
    "llava_hf.build",
    "llava_hf.load",
    "llava_hf.export",
    "llava_hf.decode",
    "llava_hf.schema",
    "llava_hf.mixture",
    "llava_hf.card",
    "llava_hf.hub",
    "llava_hf.chat",
    "llava_hf.ray",
]


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions and the rest."""
    if name.isupper() or (name.upper() == name and "_" in name):
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported)
    for member in exported:
        assert hasattr(module, member), f"{name}.__all__ names {member!r}, which does not exist"


def test_top_level_exports_every_public_name_and_nothing_private() -> None:
    # the names are imported on first use: dir() lists them before, vars() once every one is resolved
    for name in llava_hf.__all__:
        getattr(llava_hf, name)
    for names in (dir(llava_hf), vars(llava_hf)):
        public = {
            name
            for name in names
            if not name.startswith("_")
            and not isinstance(getattr(llava_hf, name), types.ModuleType)
            and name not in {"annotations", "TYPE_CHECKING", "Any"}
        }
        assert public == set(llava_hf.__all__) - {"__version__"}
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        llava_hf.not_a_name  # noqa: B018


def test_names_the_issues_promise_are_importable() -> None:
    from llava_hf import LlavaBuilder, LlavaConfig, decode_media, load_llava
    from llava_hf.chat import from_messages, render, to_messages
    from llava_hf.hub import push_to_hub

    assert all(
        callable(f) for f in (decode_media, load_llava, from_messages, render, to_messages, push_to_hub)
    )
    assert issubclass(LlavaConfig, __import__("datasets").BuilderConfig)
    assert issubclass(
        LlavaBuilder, __import__("datasets").ArrowBasedBuilder
    )  # issue 18: the core is _generate_tables
