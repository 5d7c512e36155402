// name: export_edges
// description: Every edge leaving the run's nodes of one label, with its properties (export).
// params: key
// placeholders: __label__ (identifiers filled by the caller, checked)
MATCH (a:__label__ {run: $key})-[e]->(b) RETURN a.key AS source, b.key AS target, type(e) AS type, e {.*} AS props
