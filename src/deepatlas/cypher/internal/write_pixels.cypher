// name: write_pixels
// description: Write Pixel nodes.
// params: rows
UNWIND $rows AS row MERGE (n:Pixel {key: row.key}) SET n += row
