// name: neuron_heatmap
// description: A neuron's Pearson r with every input pixel (row-major, channel first), for a heatmap.
// params: run (str), layer (str), unit (int)
MATCH (r:Run {name: $run, status: 'complete'})
MATCH (n:Neuron {key: r.key + '/n/' + $layer + '/' + toString($unit)})
MATCH (i:Layer {key: r.key + '/layer/input'})
RETURN n.layer AS layer, n.index AS unit, n.dead AS dead, i.size AS pixels, n.pixel_r AS pixel_r
