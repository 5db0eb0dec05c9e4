"""The Python SDK: :class:`tusk.Client`, :class:`tusk.AsyncClient` and the ``tusk://``
file system for fsspec (pandas, polars, DuckDB, …)."""
