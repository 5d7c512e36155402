// name: experiments
// description: The experiments recorded on a run, newest first, with their classes and how many units they touched.
// params: run (str)
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (x:Experiment {run: r.key})
OPTIONAL MATCH (x)-[:ON_CLASS]->(c:Class)
WITH x, collect(DISTINCT c.name) AS classes
OPTIONAL MATCH (x)-[t:TARGETS]->(n:Neuron)
RETURN x.kind AS kind, classes, count(t) AS units, x.params AS params, toString(x.created_at) AS created, x.key AS key
ORDER BY created DESC
