// name: run_confusion
// description: The run's confusion matrix.
// params: key
MATCH (r:Run {key: $key}) RETURN r.confusion AS confusion
