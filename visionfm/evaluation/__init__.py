"""visionfm.evaluation."""
