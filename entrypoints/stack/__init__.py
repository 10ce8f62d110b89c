"""The local stack: the real parts, installed and started by the project itself."""
