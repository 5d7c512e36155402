// name: experiment_targets
// description: Connect an Experiment to the neurons it targets, with their rank.
// params: key, rows
MATCH (x:Experiment {key: $key}) UNWIND $rows AS row MATCH (n:Neuron {key: row.key}) CREATE (x)-[:TARGETS {rank: row.rank}]->(n)
