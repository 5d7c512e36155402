// name: create_experiment
// description: Create one Experiment node.
// params: key, kind, params, result, run
CREATE (x:Experiment {key: $key, run: $run, kind: $kind, params: $params, result: $result, created_at: datetime()})
