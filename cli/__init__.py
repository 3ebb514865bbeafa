"""The `semsearch` command line (`semsearch.cli.main:main`)."""
