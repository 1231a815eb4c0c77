"""The project's tools: the run harness and what runs on it (bench, chaos, docker checks)."""
