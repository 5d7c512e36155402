// name: delete_communities
// description: Delete the run's Community nodes (and their MEMBER_OF edges).
// params: run
MATCH (c:Community {run: $run}) DETACH DELETE c
