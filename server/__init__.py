"""The HTTP server: OpenAI-compatible routes over the decoding strategies."""
