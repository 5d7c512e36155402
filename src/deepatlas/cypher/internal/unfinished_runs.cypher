// name: unfinished_runs
// description: The runs of a name that are not complete, with their writers and heartbeat ages.
// params: name
MATCH (r:Run {name: $name}) WHERE r.status <> 'complete' RETURN r.key AS key, r.status AS status, r.writer AS writer, r.created_at AS created, duration.inSeconds(coalesce(r.heartbeat, r.created_at), datetime()).seconds AS age
