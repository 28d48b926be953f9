"""Batches: many independent requests at once, within the pool's limits — ``POST
/v1/batch`` (synchronous) and OpenAI's Files and Batch APIs (in the background)."""
