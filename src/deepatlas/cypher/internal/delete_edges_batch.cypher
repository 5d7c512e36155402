// name: delete_edges_batch
// description: Delete up to $limit edges touching the run's nodes of one label.
// params: key, limit
// placeholders: __label__ (identifiers filled by the caller, checked)
MATCH (n:__label__ {run: $key})-[e]-() WITH DISTINCT e LIMIT $limit DELETE e RETURN count(*) AS count
