// name: confused_pairs
// description: The most frequent mistakes: images of class `true` predicted as class `predicted`.
// params: run (str), k (int)
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (a:Class {run: r.key})-[m:CONFUSED_WITH]->(b:Class)
RETURN a.name AS true, b.name AS predicted, m.count AS count, m.rate AS rate
ORDER BY count DESC, true, predicted
LIMIT $k
