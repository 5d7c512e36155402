// name: drivers_side_by_side
// description: A class's top-k drivers in the base and the head run of a comparison, rank by rank, with each base driver's matched unit in the head run.
// params: base (str), head (str), class (str), k (int)
// In Neo4j Browser: :param base => 'mine-25'; :param head => 'mine-100'; :param class => 'Sandal'; :param k => 10;
MATCH (cmp:Comparison {base: $base, head: $head})-[:BASE]->(ra:Run), (cmp)-[:HEAD]->(rb:Run)
CALL {
  WITH ra
  MATCH (ca:Class {run: ra.key}) WHERE toLower(ca.name) = toLower($class)
  MATCH (n:Neuron)-[e:COACTIVATES]->(ca)
  WITH n, e.r AS r ORDER BY r DESC LIMIT $k
  RETURN collect({unit: n.layer + ':' + n.index, r: r, key: n.key}) AS base_drivers
}
CALL {
  WITH rb
  MATCH (cb:Class {run: rb.key}) WHERE toLower(cb.name) = toLower($class)
  MATCH (n:Neuron)-[e:COACTIVATES]->(cb)
  WITH n, e.r AS r ORDER BY r DESC LIMIT $k
  RETURN collect({unit: n.layer + ':' + n.index, r: r, key: n.key}) AS head_drivers
}
UNWIND range(0, $k - 1) AS i
WITH cmp, i, base_drivers, head_drivers WHERE i < size(base_drivers) OR i < size(head_drivers)
OPTIONAL MATCH (:Neuron {key: base_drivers[i].key})-[m:MATCHES {comparison: cmp.key, kind: 'one-to-one'}]->(mb:Neuron)
RETURN i + 1 AS rank, base_drivers[i].unit AS base_unit, base_drivers[i].r AS base_r,
       mb.layer + ':' + mb.index AS base_unit_in_head, m.r AS match_r,
       head_drivers[i].unit AS head_unit, head_drivers[i].r AS head_r
ORDER BY rank
