// name: list_runs
// description: Runs, newest first; only complete ones unless $all.
// params: all
MATCH (r:Run) WHERE $all OR r.status = 'complete' RETURN r ORDER BY r.created_at DESC
