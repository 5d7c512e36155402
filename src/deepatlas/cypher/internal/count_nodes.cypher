// name: count_nodes
// description: How many nodes of one label the run has.
// params: key
// placeholders: __label__ (identifiers filled by the caller, checked)
MATCH (n:__label__ {run: $key}) RETURN count(n) AS c
