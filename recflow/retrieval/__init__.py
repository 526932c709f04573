"""Vector indexes (FAISS, hnswlib), their tuning and builds, title matching and similar-item search."""
