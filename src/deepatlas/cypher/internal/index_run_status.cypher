// name: index_run_status
// description: Index Run status.
// params: 
CREATE INDEX run_status IF NOT EXISTS FOR (n:Run) ON (n.status)
