"""visionfm.heads."""
