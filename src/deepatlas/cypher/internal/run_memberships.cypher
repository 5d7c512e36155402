// name: run_memberships
// description: The communities stored for a run (by `analyze communities`): each member's key and community index, with the run's modularity, the graph it was computed on and its parameters.
// params: run
MATCH (r:Run {key: $run})
OPTIONAL MATCH (c:Community {run: $run})<-[:MEMBER_OF]-(m)
RETURN m.key AS node, c.index AS community, r.modularity AS q, r.modularity_graph AS graph, r.community_params AS params
