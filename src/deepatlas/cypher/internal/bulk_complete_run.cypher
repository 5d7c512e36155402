// name: bulk_complete_run
// description: Mark a bulk-imported run complete.
// params: key, phases
MATCH (r:Run {key: $key, status: 'running'}) SET r.status = 'complete', r.created_at = datetime(), r.completed_at = datetime(), r.bulk = true, r.bulk_seconds = $phases
