"""Where what happened goes: the access log's records, the log file, the metrics."""
