"""Applications: their API keys (hashed, in DynamoDB), the key cache, and per-app rate limits.

``keys`` (``AppStore``: create, list, authenticate, limits), ``key_cache`` (bounded LRU
maps and the budget of lookups unknown keys may cost), ``ratelimit`` (the token-bucket
rule, pure) and ``ratelimit_store`` (its buckets in DynamoDB, one conditional write per
admitted request).

Layer: below ``lake/``, above ``http/`` (whose typed errors it raises).
"""
