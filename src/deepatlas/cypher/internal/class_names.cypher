// name: class_names
// description: The run's class names in output order.
// params: key
MATCH (c:Class {run: $key}) RETURN c.name AS name ORDER BY c.index
