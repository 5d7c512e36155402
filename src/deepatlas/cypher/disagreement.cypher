// name: disagreement
// description: Each unit's co-activation r with a class beside its influence or gradient on it ($by: 'influence' or 'gradient'; $class '' = all classes).
// params: run (str), class (str), by (str)
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (c:Class {run: r.key})
WHERE $class = '' OR toLower(c.name) = toLower($class)
MATCH (n:Neuron)-[co:COACTIVATES]->(c)
OPTIONAL MATCH (n)-[infl:INFLUENCES]->(c)
OPTIONAL MATCH (n)-[gr:GRADIENT]->(c)
WITH c, n, co, CASE $by WHEN 'gradient' THEN gr.pg ELSE infl.score END AS score
WHERE score IS NOT NULL
RETURN c.name AS class, n.layer AS layer, n.index AS unit, co.r AS r, score
ORDER BY class, r DESC
