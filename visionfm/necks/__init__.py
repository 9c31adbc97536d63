"""visionfm.necks."""
