// name: write_neurons
// description: Write Neuron nodes and their IN_LAYER edges.
// params: rows
UNWIND $rows AS row MERGE (n:Neuron {key: row.key}) SET n += row {.*, layer_key: null} WITH n, row MATCH (l:Layer {key: row.layer_key}) MERGE (n)-[:IN_LAYER]->(l)
