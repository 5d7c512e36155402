// name: delete_nodes_batch
// description: Delete up to $limit of the run's nodes of one label.
// params: key, limit
// placeholders: __label__ (identifiers filled by the caller, checked)
MATCH (n:__label__ {run: $key}) WITH n LIMIT $limit DETACH DELETE n RETURN count(*) AS count
