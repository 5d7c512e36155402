// name: delete_run_node
// description: Delete the Run node itself.
// params: key
MATCH (r:Run {key: $key}) DETACH DELETE r
