// name: run_pixel_shape
// description: The run's pixel grid (or input shape for runs written before pixel grids).
// params: key
MATCH (r:Run {key: $key}) RETURN coalesce(r.pixel_shape, r.input_shape) AS shape
