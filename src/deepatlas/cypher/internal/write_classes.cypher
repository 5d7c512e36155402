// name: write_classes
// description: Write Class nodes and their IN_LAYER edges.
// params: rows
UNWIND $rows AS row MERGE (n:Class {key: row.key}) SET n += row {.*, layer_key: null} WITH n, row MATCH (l:Layer {key: row.layer_key}) MERGE (n)-[:IN_LAYER]->(l)
