// name: central_neurons
// description: The neurons with the largest weighted degree (after `deepatlas analyze centrality`).
// params: run (str), k (int)
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (n:Neuron {run: r.key})
WHERE n.strength IS NOT NULL
RETURN n.layer AS layer, n.index AS unit, n.degree AS degree, n.strength AS strength
ORDER BY strength DESC, layer, unit
LIMIT $k
