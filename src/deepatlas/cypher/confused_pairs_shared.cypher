// name: confused_pairs_shared
// description: The most confused class pairs (both directions) with their neuron-set overlap and shared neurons.
// params: run (str), k (int)
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (a:Class {run: r.key})-[o:OVERLAPS]->(b:Class)
OPTIONAL MATCH (a)<-[:IN_SET]-(n:Neuron)-[:IN_SET]->(b)
WITH a, b, o, collect(n.layer + ':' + toString(n.index)) AS shared
RETURN a.name AS a, b.name AS b, o.mistakes AS mistakes, o.jaccard AS jaccard, o.shared AS n_shared, shared
ORDER BY mistakes DESC, jaccard DESC
LIMIT $k
