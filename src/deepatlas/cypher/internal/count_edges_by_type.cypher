// name: count_edges_by_type
// description: The run's edges leaving nodes of one label, counted by type.
// params: key
// placeholders: __label__ (identifiers filled by the caller, checked)
MATCH (n:__label__ {run: $key})-[e]->() RETURN type(e) AS t, count(e) AS c
