// name: run_classes
// description: The run's classes in output order.
// params: key
MATCH (c:Class {run: $key}) RETURN c.key AS key, c.index AS index, c.name AS name, 'class' AS kind ORDER BY c.index
