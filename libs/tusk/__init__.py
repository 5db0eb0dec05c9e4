"""tusk: versioned data, data-driven pipelines and real-time model serving (shared kernel)."""

__version__ = "0.1.0"
