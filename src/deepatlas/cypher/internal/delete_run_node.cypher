// name: delete_run_node
// description: Delete a run's node, and the comparisons it was one side of (their MATCHES went with the run's neurons).
// params: key
MATCH (r:Run {key: $key})
OPTIONAL MATCH (r)<-[:BASE|HEAD]-(c:Comparison)
DETACH DELETE c, r
