// name: run_keys_by_name
// description: The keys of every generation of a named run.
// params: name
MATCH (r:Run {name: $name}) RETURN r.key AS key
