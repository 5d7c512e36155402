// name: run_created_at
// description: When a run was created.
// params: key
MATCH (r:Run {key: $key}) RETURN r.created_at AS created
