"""Object stores: where file contents live, as content-addressed chunks."""

from tusk.objectstore.base import ObjectInfo, ObjectStore, open_object_store
from tusk.objectstore.chunks import ChunkedFile, ChunkStore

__all__ = ["ChunkStore", "ChunkedFile", "ObjectInfo", "ObjectStore", "open_object_store"]
