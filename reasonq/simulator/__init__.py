"""The built-in simulated reasoning model: an OpenAI-compatible streaming endpoint that behaves like DeepSeek-R1."""
