// name: create_matches
// description: Unit matches of a comparison: (:Neuron) of the base run -[:MATCHES {r, kind}]-> (:Neuron) of the head run.
// params: comparison, rows
UNWIND $rows AS row
MATCH (a:Neuron {key: row.a}), (b:Neuron {key: row.b})
CREATE (a)-[:MATCHES {r: row.r, kind: row.kind, comparison: $comparison}]->(b)
