from __future__ import annotations

from pydantic import Field

from tusk.objectstore.chunks import DEFAULT_CHUNK_SIZE
from tusk.settings import CommonSettings


class RepoSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=8081, alias="TUSK_REPO_PORT")
    s3_gateway_port: int = Field(
        default=8085,
        ge=0,
        le=65535,
        alias="TUSK_S3_GATEWAY_PORT",
        description="Port of the S3 gateway that `tusk up` serves beside the repo API.",
    )
    chunk_size: int = Field(
        default=DEFAULT_CHUNK_SIZE,
        ge=64 * 1024,
        alias="TUSK_REPO_CHUNK_SIZE",
        description="Files are split into chunks of this many bytes, each stored once.",
    )
    max_file_bytes: int = Field(
        default=1 << 40,
        alias="TUSK_REPO_MAX_FILE_BYTES",
        description="Largest single file a put accepts (413 above it).",
    )
    max_batch_bytes: int = Field(
        default=256 << 20,
        alias="TUSK_REPO_MAX_BATCH_BYTES",
        description="Largest tar body a batch put accepts (413 above it); a batch is held in "
        "memory while it is stored, so this bounds what one request can cost.",
    )
    max_batch_member_bytes: int = Field(
        default=64 << 20,
        alias="TUSK_REPO_MAX_BATCH_MEMBER_BYTES",
        description="Largest single file inside a batch put; larger files use the streamed put.",
    )
    upload_concurrency: int = Field(
        default=4,
        ge=1,
        alias="TUSK_REPO_UPLOAD_CONCURRENCY",
        description="Chunks of one upload written to the object store at once. Each costs about "
        "twice the chunk size in memory while it is sent (the S3 client copies the body).",
    )
    tree_cache_entries: int = Field(default=2_000_000, alias="TUSK_REPO_TREE_CACHE_ENTRIES")
    outbox_relay: bool = Field(
        default=True,
        alias="TUSK_REPO_OUTBOX_RELAY",
        description="Publish the outbox from this process (off: another process does it).",
    )
