"""The typed cluster model, loaded and validated once, up front."""

from builder.config.load import load_cluster
from builder.config.model import BaseImage, Cluster, Network, Node, User

__all__ = ["BaseImage", "Cluster", "Network", "Node", "User", "load_cluster"]
