"""The tusk console: the DAG, repos, pipelines, jobs, lineage and models in a browser."""
