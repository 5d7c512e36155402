// name: mark_failed
// description: Mark a run failed, with the reason.
// params: key, reason
MATCH (r:Run {key: $key}) SET r.status = 'failed', r.error = $reason
