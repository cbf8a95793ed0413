"""Every route of the API."""
