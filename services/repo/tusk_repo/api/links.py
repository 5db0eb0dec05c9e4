"""The OpenAPI links of the repo API: a created repo leads to its commits, a started commit
to its files and its finish."""

from __future__ import annotations

REPO = {"repo": "$response.body#/name"}
COMMIT = {"repo": "$response.body#/repo", "ref": "$response.body#/id"}

LINKS: list[tuple[str, str, str, str, str, dict[str, str]]] = [
    ("post", "/v1/repos", "201", "InspectRepo", "inspect_repo_v1_repos__repo__get", REPO),
    ("post", "/v1/repos", "201", "StartCommit", "start_commit_v1_repos__repo__commits_post", REPO),
    (
        "post",
        "/v1/repos",
        "201",
        "ListBranches",
        "list_branches_v1_repos__repo__branches_get",
        REPO,
    ),
    ("post", "/v1/repos", "201", "DeleteRepo", "delete_repo_v1_repos__repo__delete", REPO),
    *[
        ("post", "/v1/repos/{repo}/commits", "201", name, operation, COMMIT)
        for name, operation in (
            ("InspectCommit", "inspect_commit_v1_repos__repo__commits__ref__get"),
            ("PutFile", "put_file_v1_repos__repo__commits__ref__file_put"),
            ("PutFiles", "put_files_v1_repos__repo__commits__ref__files_post"),
            ("ListFiles", "list_files_v1_repos__repo__commits__ref__list_get"),
            ("FinishCommit", "finish_commit_v1_repos__repo__commits__ref__finish_post"),
            ("AbandonCommit", "abandon_commit_v1_repos__repo__commits__ref__delete"),
        )
    ],
    *[
        ("post", "/v1/repos/{repo}/commits/{ref}/finish", "200", name, operation, COMMIT)
        for name, operation in (
            ("Diff", "diff_v1_repos__repo__commits__ref__diff_get"),
            ("Log", "log_v1_repos__repo__commits__ref__log_get"),
            ("Glob", "glob_v1_repos__repo__commits__ref__glob_get"),
        )
    ],
]
