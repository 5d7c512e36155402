// name: start_here
// description: The complete runs, newest first, with their classes and the :param line that picks each.
// params: (none)
MATCH (r:Run {status: 'complete'})
OPTIONAL MATCH (c:Class {run: r.key})
WITH r, c ORDER BY c.index
WITH r, collect(c.name) AS names
RETURN r.name AS run, r.dataset AS dataset, r.n_samples AS images, r.accuracy AS accuracy,
       size(names) AS n_classes, names[..20] AS classes,
       ':param run => \'' + r.name + '\'' AS pick_it_with
ORDER BY r.completed_at DESC
