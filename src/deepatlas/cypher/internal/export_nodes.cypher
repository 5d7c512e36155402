// name: export_nodes
// description: Every node of one label in a run, with all its properties (export).
// params: key
// placeholders: __label__ (identifiers filled by the caller, checked)
MATCH (n:__label__ {run: $key}) RETURN n {.*} AS props
