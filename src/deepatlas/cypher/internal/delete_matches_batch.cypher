// name: delete_matches_batch
// description: Delete up to $limit MATCHES edges of one comparison (before it is written again).
// params: comparison, limit
MATCH ()-[m:MATCHES {comparison: $comparison}]->() WITH m LIMIT $limit DELETE m RETURN count(*) AS count
