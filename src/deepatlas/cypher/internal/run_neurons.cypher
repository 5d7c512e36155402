// name: run_neurons
// description: The run's neurons in forward (layer, index) order.
// params: key
MATCH (n:Neuron {run: $key})-[:IN_LAYER]->(l:Layer) RETURN n.key AS key, n.layer AS layer, n.index AS index, n.dead AS dead, 'neuron' AS kind ORDER BY l.position, n.index
