"""One-shot search: a supernet whose shared weights serve every cell of a space, and the searches
that train it once and score many cells with it (``rsws``: random search with weight sharing)."""
