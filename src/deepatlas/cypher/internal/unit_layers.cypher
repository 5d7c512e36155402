// name: unit_layers
// description: The run's conv and dense layers in forward order (name, kind, size).
// params: key
MATCH (l:Layer {run: $key}) WHERE l.kind IN ['conv', 'dense'] RETURN l.name AS name, l.kind AS kind, l.size AS size ORDER BY l.position
