// name: latest_complete_run
// description: The complete run completed last.
// params: 
MATCH (r:Run {status: 'complete'}) RETURN r ORDER BY r.completed_at DESC LIMIT 1
