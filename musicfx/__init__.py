"""musicfx: PyTorch Lightning tasks for recorded music."""
__version__ = "0.1.0"
