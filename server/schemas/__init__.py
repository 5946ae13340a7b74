"""OpenAI wire models (pydantic) for the HTTP edge."""
