// name: run_coactivations
// description: The COACTIVATES edges among the run's neurons and classes.
// params: key
// placeholders: __label__ (identifiers filled by the caller, checked)
MATCH (a:__label__ {run: $key})-[e:COACTIVATES]->(b) WHERE b:Neuron OR b:Class RETURN a.key AS a, b.key AS b, e.r AS r
