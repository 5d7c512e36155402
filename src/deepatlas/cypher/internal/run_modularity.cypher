// name: run_modularity
// description: Record the modularity, its graph and the parameters on the Run.
// params: graph, params, q, rows, run
MATCH (r:Run {key: $run}) SET r.modularity = $q, r.modularity_graph = $graph, r.communities = size($rows), r.community_params = $params
