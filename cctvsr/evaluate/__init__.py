"""`cctvsr evaluate`: the paper's benchmark (degraded HR faces, every method, its metrics) and identity."""
