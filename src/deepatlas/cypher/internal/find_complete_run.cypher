// name: find_complete_run
// description: The complete run of a name.
// params: name
MATCH (r:Run {name: $name, status: 'complete'}) RETURN r
