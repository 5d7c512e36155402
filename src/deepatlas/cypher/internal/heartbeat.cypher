// name: heartbeat
// description: Refresh a running run's heartbeat (its writer is alive).
// params: key
MATCH (r:Run {key: $key, status: 'running'}) SET r.heartbeat = datetime()
