"""The ONNX side: load (the only parser of untrusted files) and its checks, the graph, the shape engine
and its formulas in free dims, and the names that carry structure. No TensorFlow here."""
