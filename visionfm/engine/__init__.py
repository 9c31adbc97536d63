"""visionfm.engine."""
