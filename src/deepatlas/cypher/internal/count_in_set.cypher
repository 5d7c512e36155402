// name: count_in_set
// description: How many IN_SET edges the run has (analyze overlap ran?).
// params: key
MATCH (n:Neuron {run: $key})-[s:IN_SET]->() RETURN count(s) AS n
