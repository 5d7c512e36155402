// name: drives_a_not_b
// description: Neurons in class a's set but not in class b's (after `deepatlas analyze overlap`), by r to a.
// params: run (str), a (str), b (str)
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (ca:Class {run: r.key}) WHERE toLower(ca.name) = toLower($a)
MATCH (cb:Class {run: r.key}) WHERE toLower(cb.name) = toLower($b)
MATCH (n:Neuron)-[s:IN_SET]->(ca)
WHERE NOT (n)-[:IN_SET]->(cb)
OPTIONAL MATCH (n)-[e:COACTIVATES]->(cb)
RETURN n.layer AS layer, n.index AS unit, s.r AS r_a, e.r AS r_b
ORDER BY r_a DESC
