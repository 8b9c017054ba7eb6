"""vLLM-compatible simulator engine: continuous batching, KV blocks with prefix caching, multi-node."""
