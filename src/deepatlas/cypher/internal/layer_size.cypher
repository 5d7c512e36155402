// name: layer_size
// description: How many units a layer of the run has.
// params: key, name
MATCH (l:Layer {run: $key, name: $name}) RETURN l.size AS s
