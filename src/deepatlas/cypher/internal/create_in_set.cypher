// name: create_in_set
// description: Create IN_SET edges (a neuron in a class's neuron set, with rank and r).
// params: rows
UNWIND $rows AS row MATCH (n:Neuron {key: row.neuron}) MATCH (c:Class {key: row.cls}) CREATE (n)-[:IN_SET {rank: row.rank, r: row.r}]->(c)
