// name: neuron_pixel_r
// description: The stored pixel correlations of the given neurons.
// params: keys
UNWIND $keys AS k MATCH (n:Neuron {key: k}) RETURN n.key AS key, n.pixel_r AS pixel_r
