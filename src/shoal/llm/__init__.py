"""An LLM behind any OpenAI-compatible endpoint (vLLM, llama.cpp's server, Ollama, a hosted API), as one more tier.

- `spec`: the fleet file's `llm:` section, one entry per endpoint (URL, model, key variable, prices, limits);
- `prompt`: the prompt of a classification and its answer constrained to the labels (JSON schema, JSON object or
  strictly parsed text, whichever the server accepts);
- `client`: the async client: timeouts, retries with backoff (and `Retry-After`), a concurrency limit, the response
  cache and the spend per UTC day kept in the registry (`shoal.registry.llm_store`);
- `fallback`: the endpoint as a cascade's `Fallback`;
- `errors`: what can go wrong, each its own type.
"""
