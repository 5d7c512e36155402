// name: server_version
// description: The Neo4j version.
// params: 
CALL dbms.components() YIELD versions RETURN versions[0] AS v
