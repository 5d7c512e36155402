// name: class_drivers
// description: The hidden neurons most positively correlated (co-activation r) with a class.
// params: run (str), class (str), k (int)
// In Neo4j Browser: :param run => 'fashion-test'; :param class => 'Sandal'; :param k => 10;
// Plan (bench/RESULTS.md): sort the class's incoming edges by r alone, then check the label and
// read layer/unit lazily, only for the rows the LIMIT takes (about 2 db hits per unit in all).
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (c:Class {run: r.key})
WHERE toLower(c.name) = toLower($class)
MATCH (n)-[e:COACTIVATES]->(c)
WITH n, e.r AS r
ORDER BY r DESC
WITH n, r WHERE n:Neuron
RETURN n.layer AS layer, n.index AS unit, n.kind AS kind, r, n.key AS key
ORDER BY r DESC, layer, unit
LIMIT $k
