// name: index_run_name
// description: Index Run names.
// params: 
CREATE INDEX run_name IF NOT EXISTS FOR (n:Run) ON (n.name)
