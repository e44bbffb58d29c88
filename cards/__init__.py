"""Dataset card templates (Jinja Markdown), installed as the package data ``llava_hf.cards``.

The package mapping lives in pyproject.toml (``[tool.setuptools.package-dir]``); ``llava_hf.card``
reads the template through ``importlib.resources`` and falls back to this folder in a source checkout.
"""
