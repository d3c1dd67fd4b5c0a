"""Study: fusing the served default's scores with first-stage lists (BM25, TAS-B, SPLADE)."""
