"""The wire contract: topics, payload schemas and window arithmetic. A leaf: no I/O, nothing of ours."""
