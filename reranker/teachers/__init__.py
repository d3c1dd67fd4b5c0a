"""Teacher-ensemble members beyond our own architectures (training side: imports torch lazily).

See :mod:`reranker.teachers.members` for the member specs and :mod:`reranker.teachers.packaged` for
the pretrained models that PyPI packages ship inside their wheels.
"""
