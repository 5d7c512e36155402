// name: create_running_run
// description: Create (or update) the Model node and a new running Run with its writer's identity.
// params: key, model, name, props, writer
MERGE (m:Model {key: $model.key}) SET m += $model CREATE (r:Run {key: $key, name: $name, status: 'running', created_at: datetime(), heartbeat: datetime(), writer: $writer}) SET r += $props SET r.model = $model.key CREATE (r)-[:OF_MODEL]->(m)
