// name: shared_neurons
// description: Neurons in the neuron sets of both classes (after `deepatlas analyze overlap`).
// params: run (str), a (str), b (str)
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (ca:Class {run: r.key}) WHERE toLower(ca.name) = toLower($a)
MATCH (cb:Class {run: r.key}) WHERE toLower(cb.name) = toLower($b)
MATCH (ca)<-[sa:IN_SET]-(n:Neuron)-[sb:IN_SET]->(cb)
RETURN n.layer AS layer, n.index AS unit, sa.r AS r_a, sb.r AS r_b
ORDER BY r_a + r_b DESC
