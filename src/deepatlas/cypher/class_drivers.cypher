// name: class_drivers
// description: The hidden neurons most positively correlated (co-activation r) with a class.
// params: run (str), class (str), k (int)
// In Neo4j Browser: :param run => 'fashion-test'; :param class => 'Sandal'; :param k => 10;
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (c:Class {run: r.key})
WHERE toLower(c.name) = toLower($class)
MATCH (n:Neuron)-[e:COACTIVATES]->(c)
RETURN n.layer AS layer, n.index AS unit, n.kind AS kind, e.r AS r, n.key AS key
ORDER BY r DESC, layer, unit
LIMIT $k
