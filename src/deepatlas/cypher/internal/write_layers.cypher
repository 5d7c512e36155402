// name: write_layers
// description: Write Layer nodes.
// params: rows
UNWIND $rows AS row MERGE (n:Layer {key: row.key}) SET n += row
