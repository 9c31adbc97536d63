"""visionfm.backbones."""
