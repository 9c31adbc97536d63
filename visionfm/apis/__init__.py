"""visionfm.apis."""
