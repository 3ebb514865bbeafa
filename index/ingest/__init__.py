"""Ingest: read files into records, cut long texts into chunks, embed and build a collection."""
