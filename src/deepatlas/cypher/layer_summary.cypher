// name: layer_summary
// description: The layers of a run in forward order, with their unit counts and dead units.
// params: run (str)
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (l:Layer {run: r.key})
OPTIONAL MATCH (n)-[:IN_LAYER]->(l)
RETURN l.position AS position, l.name AS layer, l.kind AS kind, l.size AS size,
       count(n) AS nodes, count(CASE WHEN n.dead THEN 1 END) AS dead
ORDER BY position
