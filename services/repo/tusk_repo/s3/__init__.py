"""S3 gateway onto the repos: bucket = repo, key = REF/PATH."""
