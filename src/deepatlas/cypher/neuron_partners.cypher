// name: neuron_partners
// description: The units and classes a neuron co-activates with most strongly (by |r|).
// params: run (str), layer (str), unit (int), k (int)
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (n:Neuron {key: r.key + '/n/' + $layer + '/' + toString($unit)})
MATCH (n)-[e:COACTIVATES]-(m)
WHERE m:Neuron OR m:Class
RETURN CASE WHEN m:Class THEN 'class' ELSE m.layer END AS layer,
       coalesce(m.name, toString(m.index)) AS unit, e.r AS r
ORDER BY abs(e.r) DESC
LIMIT $k
