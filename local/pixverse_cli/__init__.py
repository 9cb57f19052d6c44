"""pixverse-jobs, the command-line client of a pixverse-jobs stack (deployed or local)."""
