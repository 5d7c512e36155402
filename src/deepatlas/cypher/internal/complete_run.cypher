// name: complete_run
// description: Mark a running run complete and older complete generations of its name replaced, in one transaction.
// params: key, seconds
MATCH (r:Run {key: $key, status: 'running'}) SET r.status = 'complete', r.completed_at = datetime(), r.write_seconds = $seconds WITH r OPTIONAL MATCH (old:Run {name: r.name, status: 'complete'}) WHERE old.key <> r.key SET old.status = 'replaced' RETURN r.key AS key, collect(old.key) AS replaced
