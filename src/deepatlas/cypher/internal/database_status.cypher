// name: database_status
// description: The default database's state (system database).
// params: 
SHOW DATABASE neo4j YIELD currentStatus
