"""Deployment helpers that docker-compose.yml mounts into its containers (not in the image)."""
