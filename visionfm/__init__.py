"""visionfm: vision transformer backbones and task heads, composed through configs."""

__version__ = "0.1.0"
