"""Research studies: each folder is a study with its driver (``python -m studies.NAME``), a README and dated results."""
