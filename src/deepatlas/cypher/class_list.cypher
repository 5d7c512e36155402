// name: class_list
// description: The classes of a run with their support, predictions and per-class accuracy.
// params: run (str)
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (c:Class {run: r.key})
OPTIONAL MATCH (c)-[m:CONFUSED_WITH]->()
WITH c, coalesce(sum(m.count), 0) AS wrong
RETURN c.index AS index, c.name AS name, c.support AS support, c.predicted AS predicted,
       CASE c.support WHEN 0 THEN null ELSE toFloat(c.support - wrong) / c.support END AS accuracy
ORDER BY index
