// name: communities
// description: The Louvain communities of a run (after `deepatlas analyze communities`), with their classes.
// params: run (str)
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (c:Community {run: r.key})
RETURN c.index AS community, c.size AS size, c.classes AS classes, c.modularity AS modularity,
       c.graph AS modularity_graph
ORDER BY community
