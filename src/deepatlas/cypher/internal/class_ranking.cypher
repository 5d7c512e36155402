// name: class_ranking
// description: A class's neurons ranked by one stored edge type (COACTIVATES, INFLUENCES or GRADIENT).
// params: class_key, layer, run
// placeholders: __rel__, __prop__ (identifiers filled by the caller, checked)
MATCH (c:Class {key: $class_key}) MATCH (n:Neuron)-[e:__rel__]->(c) WHERE n.run = $run AND ($layer IS NULL OR n.layer = $layer) AND NOT n.dead RETURN n.layer AS layer, n.index AS index, e.__prop__ AS score ORDER BY score DESC, layer, index
