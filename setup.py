"""Package discovery only (metadata is in pyproject.toml): every ``reranker*`` package, and the
top-level ``export/`` folder installed under the name ``reranker_export``."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["reranker", "reranker.*"]), "reranker_export"], package_dir={"reranker_export": "export"})
