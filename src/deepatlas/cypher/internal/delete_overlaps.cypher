// name: delete_overlaps
// description: Delete the run's OVERLAPS edges.
// params: run
MATCH (:Class {run: $run})-[o:OVERLAPS]->() DELETE o
