// name: create_comparison
// description: The (:Comparison) node of two runs, replaced in place, linked to the base and head runs.
// params: base, head, props
MATCH (a:Run {key: $base}), (b:Run {key: $head})
MERGE (c:Comparison {key: $props.key})
SET c = $props
MERGE (c)-[:BASE]->(a)
MERGE (c)-[:HEAD]->(b)
