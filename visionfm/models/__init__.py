"""visionfm.models."""
