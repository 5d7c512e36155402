// name: changed_units
// description: The base run's units that changed most in the head run: no partner above the comparison's threshold first, then the weakest one-to-one matches (deepatlas compare).
// params: base (str), head (str), k (int)
// In Neo4j Browser: :param base => 'mine-25'; :param head => 'mine-100'; :param k => 10;
MATCH (c:Comparison {base: $base, head: $head})
MATCH (c)-[:BASE]->(ra:Run)
MATCH (a:Neuron {run: ra.key})
WHERE coalesce(a.dead, false) = false
OPTIONAL MATCH (a)-[m:MATCHES {comparison: c.key, kind: 'one-to-one'}]->(b:Neuron)
RETURN a.layer AS layer, a.index AS unit, b.layer AS head_layer, b.index AS head_unit, m.r AS r, a.key AS key
ORDER BY m.r IS NOT NULL, m.r ASC, layer, unit
LIMIT $k
