// name: create_communities
// description: Create the run's Community nodes.
// params: graph, q, rows, run
UNWIND $rows AS row CREATE (c:Community {key: row.key, run: $run, index: row.index, size: row.size, classes: row.classes, modularity: $q, graph: $graph})
