"""visionfm.ops."""
