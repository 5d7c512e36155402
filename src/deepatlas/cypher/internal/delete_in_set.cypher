// name: delete_in_set
// description: Delete the run's IN_SET edges.
// params: run
MATCH (:Neuron {run: $run})-[s:IN_SET]->() DELETE s
