// name: shared_set_neurons
// description: Neurons in both classes' neuron sets (IN_SET).
// params: a, b
MATCH (a:Class {key: $a})<-[:IN_SET]-(n:Neuron)-[:IN_SET]->(b:Class {key: $b}) RETURN n.layer AS layer, n.index AS index ORDER BY layer, index
