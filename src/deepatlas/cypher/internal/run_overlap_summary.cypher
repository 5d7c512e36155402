// name: run_overlap_summary
// description: Record the overlap summary on the Run.
// params: run, summary
MATCH (r:Run {key: $run}) SET r.overlap = $summary
