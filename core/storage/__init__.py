"""Blob stores: where encrypted datasources and sealed datasinks live (local folder, Azure Blob)."""
